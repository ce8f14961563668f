package apply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/apply"
	"github.com/prepcast/prepcast/applyproto"
	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/localfs"
)

// member is one tar member of a crafted package; size < 0 means len(data).
// A member with a base is a delta member from the content of that SHA-256.
type member struct {
	name string
	data []byte
	size int64
	base string
}

// craft writes members as a package stream (a zstd stream of a tar
// archive), exactly in the order given.
func craft(t *testing.T, ms []member) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, m := range ms {
		size := m.size
		if size < 0 {
			size = int64(len(m.data))
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: m.name, Size: size, Mode: 0o644, Format: tar.FormatPAX}
		if m.base != "" {
			h.PAXRecords = map[string]string{packager.PAXDeltaBase: m.base}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil && !errors.Is(err, tar.ErrWriteTooLong) {
			t.Fatal(err)
		}
	}
	// A member whose header claims more than its data cannot be closed
	// cleanly; what was written is the stream.
	_ = tw.Close()
	enc, _ := zstd.NewWriter(nil)
	return enc.EncodeAll(tb.Bytes(), nil)
}

// cutMembers returns the members of a genuine package from cut from (0 =
// nothing) to cut to: manifest, signature, delta description, then the
// changed files with the pointers last.
func cutMembers(t *testing.T, f *fixture, from, to int64) []member {
	t.Helper()
	mt, mb, sig := f.manifest(to)
	var mf *packager.Manifest
	if from > 0 {
		mf, _, _ = f.manifest(from)
	}
	d := packager.ComputeDelta(mf, mt)
	dj, _ := json.Marshal(packager.DeltaInfo{Format: packager.DeltaFormat, ToSeq: to, ToManifest: packager.Hash(mb), Files: len(d.Changed), Bytes: d.Bytes(), Deleted: d.Deleted})
	ms := []member{{packager.PkgManifest, mb, -1, ""}, {packager.PkgSignature, sig, -1, ""}, {packager.PkgDelta, dj, -1, ""}}
	var ptrs []member
	for _, e := range d.Changed {
		data, err := os.ReadFile(f.Store.ObjectPath(e.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		if mt.IsPointer(e.Path) {
			ptrs = append(ptrs, member{e.Path, data, -1, ""})
		} else {
			ms = append(ms, member{e.Path, data, -1, ""})
		}
	}
	return append(ms, ptrs...)
}

// request returns the request for a package bringing cut to, signed with
// pub.
func request(t *testing.T, f *fixture, to int64, pub ed25519.PublicKey) applyproto.Request {
	_, mb, _ := f.manifest(to)
	return applyproto.Request{Format: applyproto.Format, Publisher: "instituto", PublicKey: base64.StdEncoding.EncodeToString(pub),
		ToSeq: to, ToManifest: packager.Hash(mb)}
}

// outcome is what one apply said and returned.
type outcome struct {
	hello applyproto.Hello
	res   applyproto.Result
	err   error
}

// runApply runs apply.Apply on the webroot dir with req (its package size
// set from pkg unless given) and pkg on its input.
func runApply(t *testing.T, dir string, o apply.Options, req applyproto.Request, pkg []byte) outcome {
	t.Helper()
	tg := o.Target
	if tg == nil {
		lt, err := localfs.New("webroot", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		tg = lt
	}
	o.Target = tg
	if o.Log == nil {
		o.Log = zaptest.NewLogger(t)
	}
	if req.PackageSize == 0 {
		req.PackageSize = int64(len(pkg))
	}
	var in bytes.Buffer
	if err := applyproto.WriteLine(&in, req); err != nil {
		t.Fatal(err)
	}
	in.Write(pkg)
	var out bytes.Buffer
	o.In, o.Out = &in, &out
	var oc outcome
	oc.err = apply.Apply(context.Background(), o)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if err := applyproto.DecodeLine([]byte(lines[0]), &oc.hello); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	if len(lines) > 1 {
		if err := applyproto.DecodeLine([]byte(lines[1]), &oc.res); err != nil {
			t.Fatalf("outcome: %v", err)
		}
	}
	return oc
}

// tree returns the files below dir outside .prepcast and the public proof
// (see proofOf), with their content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if (rel == safepath.Reserved || rel == filepath.FromSlash(packager.ProofDir)) && d.IsDir() {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// cutTree is what a root holding cut seq serves, plus extra.
func cutTree(t *testing.T, f *fixture, seq int64, extra map[string]string) map[string]string {
	t.Helper()
	m, _, _ := f.manifest(seq)
	want := map[string]string{}
	for _, e := range m.Entries {
		b, err := os.ReadFile(f.Store.ObjectPath(e.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		want[e.Path] = string(b)
	}
	for p, s := range extra {
		want[p] = s
	}
	return want
}

// proofOf checks the public proof in root dir: every cut its index lists
// has its signed manifest and signature there, byte for byte what f's
// store signed; it returns the listed seqs, oldest first.
func proofOf(t *testing.T, f *fixture, dir string) []int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(packager.ProofIndexPath)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	x, err := packager.ParseProofIndex(data)
	if err != nil {
		t.Fatalf("proof index: %v", err)
	}
	var seqs []int64
	for _, pc := range x.Cuts {
		_, mb, sig := f.manifest(pc.Seq)
		gotM, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(packager.ProofManifestPath(pc.Seq, pc.Manifest))))
		if err != nil || !bytes.Equal(gotM, mb) {
			t.Errorf("proof of cut %d: manifest %v, or not the signed one", pc.Seq, err)
		}
		gotS, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(packager.ProofSignaturePath(pc.Seq, pc.Manifest))))
		if err != nil || !bytes.Equal(gotS, sig) {
			t.Errorf("proof of cut %d: signature %v, or not the signed one", pc.Seq, err)
		}
		seqs = append(seqs, pc.Seq)
	}
	return seqs
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for p, s := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s: %s missing", what, p)
		} else if g != s {
			t.Errorf("%s: %s has other content", what, p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %s", what, p)
		}
	}
}

// ownPage is a file the difusor keeps in its root, outside every cut.
const ownPage = "mi-pagina.html"

// hostile is a difusor at cut 1 (with a page of its own) and an institute
// that has cut 2 ready.
type hostile struct {
	t    *testing.T
	f    *fixture
	dir  string
	opts apply.Options
	cut1 map[string]string // what the difusor serves now
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	f := newFixture(t)
	f.Cut()
	f.Cut()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ownPage), []byte("propia"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, f: f, dir: dir, opts: apply.Options{PublicKey: f.Pub}}
	oc := runApply(t, dir, h.opts, request(t, f, 1, f.Pub), craft(t, cutMembers(t, f, 0, 1)))
	if oc.err != nil {
		t.Fatal(oc.err)
	}
	h.cut1 = cutTree(t, f, 1, map[string]string{ownPage: "propia"})
	sameTree(t, "cut 1", tree(t, dir), h.cut1)
	return h
}

// cut2 is what the difusor serves once it holds cut 2: json/c001 left the
// cut but stays for readers of cut 1 until the retention passes.
func (h *hostile) cut2(t *testing.T) map[string]string {
	return cutTree(t, h.f, 2, map[string]string{ownPage: "propia", "json/c001/totales.json": h.cut1["json/c001/totales.json"]})
}

func without(ms []member, name string) []member {
	var out []member
	for _, m := range ms {
		if m.name != name {
			out = append(out, m)
		}
	}
	return out
}

// Each hostile package is refused with the code and message that say why,
// and the difusor still serves exactly cut 1.
func TestHostilePackagesCommitNothing(t *testing.T) {
	other, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name    string
		members func(h *hostile, ms []member) []member
		req     func(h *hostile, r *applyproto.Request)
		code    string
		want    string
	}{
		{"missing member", func(h *hostile, ms []member) []member { return without(ms, "actas/002.jpg") }, nil,
			applyproto.Incomplete, `"actas/002.jpg" of cut 2 is missing`},
		{"missing pointer", func(h *hostile, ms []member) []member { return without(ms, "json/main.json") }, nil,
			applyproto.Incomplete, `"json/main.json"`},
		{"extra member", func(h *hostile, ms []member) []member {
			return append(ms, member{ownPage, []byte("modificada"), -1, ""})
		}, nil, applyproto.BadPackage, `member "mi-pagina.html" is not a file of the signed cut`},
		{"member twice", func(h *hostile, ms []member) []member {
			return append(ms, ms[len(ms)-1])
		}, nil, applyproto.BadPackage, "appears twice"},
		{"metadata out of order", func(h *hostile, ms []member) []member {
			ms[0], ms[1] = ms[1], ms[0]
			return ms
		}, nil, applyproto.BadPackage, "where .prepcast/manifest.json belongs"},
		{"member longer than its entry", func(h *hostile, ms []member) []member {
			ms[len(ms)-1].data = append(ms[len(ms)-1].data, ' ')
			return ms
		}, nil, applyproto.BadPackage, `member "json/main.json" has`},
		{"member with other content", func(h *hostile, ms []member) []member {
			for i := range ms {
				if ms[i].name == "datos/PUE_GUB_2024.csv" {
					ms[i].data = bytes.Replace(ms[i].data, []byte("corte 2"), []byte("corte 9"), 1)
				}
			}
			return ms
		}, nil, applyproto.BadPackage, `"datos/PUE_GUB_2024.csv" does not match`},
		{"delta from content the difusor's cut does not hold", func(h *hostile, ms []member) []member {
			return asDelta(h, ms, db, func(base, content []byte) ([]byte, string) {
				return deltaFrame(h.t, content, content), sha256Hex(content)
			})
		}, nil, applyproto.BadPackage, `member "datos/PUE_GUB_2024.csv" is a delta from content`},
		{"delta to other content", func(h *hostile, ms []member) []member {
			return asDelta(h, ms, db, func(base, content []byte) ([]byte, string) {
				return deltaFrame(h.t, base, bytes.Replace(content, []byte("corte 2"), []byte("corte 9"), 1)), sha256Hex(base)
			})
		}, nil, applyproto.BadPackage, `"datos/PUE_GUB_2024.csv" does not match`},
		{"delta that decodes past its file", func(h *hostile, ms []member) []member {
			return asDelta(h, ms, db, func(base, content []byte) ([]byte, string) {
				return deltaFrame(h.t, base, append(content, "'219999B0100',1,2,3\n"...)), sha256Hex(base)
			})
		}, nil, applyproto.BadPackage, "decodes to more bytes than its file"},
		{"delta member as large as its file", func(h *hostile, ms []member) []member {
			return asDelta(h, ms, db, func(base, content []byte) ([]byte, string) { return content, sha256Hex(base) })
		}, nil, applyproto.BadPackage, "a delta is always smaller than its file"},
		{"delta from a malformed hash", func(h *hostile, ms []member) []member {
			return asDelta(h, ms, db, func(base, content []byte) ([]byte, string) {
				return deltaFrame(h.t, base, content), "../../etc/passwd"
			})
		}, nil, applyproto.BadPackage, "malformed SHA-256"},
		{"manifest claims 200 MB", func(h *hostile, ms []member) []member {
			ms[0].size = 200 << 20
			return ms[:1]
		}, nil, applyproto.BadPackage, "member .prepcast/manifest.json has 209715200 bytes, more than"},
		{"manifest padded past its entries", func(h *hostile, ms []member) []member {
			ms[0].data = append(append([]byte{}, ms[0].data...), bytes.Repeat([]byte(" "), 256<<10)...)
			return ms
		}, nil, applyproto.BadPackage, "more than 5 entries can take"},
		{"signature of 4 KiB", func(h *hostile, ms []member) []member {
			ms[1].data = bytes.Repeat([]byte("A"), 4096)
			return ms
		}, nil, applyproto.BadPackage, "member .prepcast/manifest.sig has 4096 bytes"},
		{"data after the archive", nil, nil, applyproto.BadPackage, "after the end of the archive"},
		{"key swap midway", func(h *hostile, ms []member) []member {
			ms[1].data = packager.Sign(otherPriv, ms[0].data)
			return ms
		}, func(h *hostile, r *applyproto.Request) { r.PublicKey = base64.StdEncoding.EncodeToString(other) },
			applyproto.KeyMismatch, "signature does not verify"},
		{"another cut of the same number", func(h *hostile, ms []member) []member { return otherCut1(h) },
			func(h *hostile, r *applyproto.Request) {
				*r = request(h.t, h.f, 1, h.f.Pub)
				r.ToManifest = packager.Hash(otherCut1(h)[0].data)
			}, applyproto.Rollback, "never takes a difusor back"},
		{"request names another cut", nil, func(h *hostile, r *applyproto.Request) { r.ToSeq = 3 },
			applyproto.BadPackage, "the request announced cut 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			ms := cutMembers(t, h.f, 1, 2)
			if tt.members != nil {
				ms = tt.members(h, ms)
			}
			pkg := craft(t, ms)
			if tt.name == "data after the archive" {
				enc, _ := zstd.NewWriter(nil)
				pkg = append(pkg, enc.EncodeAll([]byte("más datos"), nil)...)
			}
			req := request(t, h.f, 2, h.f.Pub)
			if tt.req != nil {
				tt.req(h, &req)
			}
			oc := runApply(t, h.dir, h.opts, req, pkg)
			if oc.err == nil || oc.res.Code != tt.code || !strings.Contains(oc.res.Error, tt.want) {
				t.Fatalf("code %q, error %q (returned %v); want %q mentioning %q", oc.res.Code, oc.res.Error, oc.err, tt.code, tt.want)
			}
			sameTree(t, "after the refusal", tree(t, h.dir), h.cut1)
			if got := fmt.Sprint(proofOf(t, h.f, h.dir)); got != "[1]" {
				t.Errorf("after the refusal the proof lists cuts %s, want [1]", got)
			}
			// The genuine package still applies.
			oc = runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, cutMembers(t, h.f, 1, 2)))
			if oc.err != nil {
				t.Fatal(oc.err)
			}
			sameTree(t, "cut 2", tree(t, h.dir), h.cut2(t))
			if got := fmt.Sprint(proofOf(t, h.f, h.dir)); got != "[1 2]" {
				t.Errorf("after cut 2 the proof lists cuts %s, want [1 2] (cut 1 within the retention)", got)
			}
		})
	}
}

// db is the results database, rewritten by every cut of the fixture.
const db = "datos/PUE_GUB_2024.csv"

// asDelta replaces member p of a package from cut 1 by the delta member
// build returns from the content cut 1 holds at p (base) and the member's
// content.
func asDelta(h *hostile, ms []member, p string, build func(base, content []byte) ([]byte, string)) []member {
	m1, _, _ := h.f.manifest(1)
	e, _ := m1.Lookup(p)
	base, err := os.ReadFile(h.f.Store.ObjectPath(e.SHA256))
	if err != nil {
		h.t.Fatal(err)
	}
	for i := range ms {
		if ms[i].name == p {
			ms[i].data, ms[i].base = build(base, ms[i].data)
		}
	}
	return ms
}

func deltaFrame(t *testing.T, base, content []byte) []byte {
	t.Helper()
	b, err := packager.EncodeDelta(base, content)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// otherCut1 is a package of a cut 1 with other content than the difusor's,
// signed with the institute's key.
func otherCut1(h *hostile) []member {
	m, _, _ := h.f.manifest(1)
	m2 := *m
	m2.Entries = append([]packager.Entry(nil), m.Entries...)
	data := []byte("otra imagen")
	sum := sha256.Sum256(data)
	var img packager.Entry
	for i, e := range m2.Entries {
		if e.Path == "actas/001.jpg" {
			m2.Bytes += int64(len(data)) - e.Size
			m2.Entries[i] = packager.Entry{Path: e.Path, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
			img = m2.Entries[i]
		}
	}
	mb, err := m2.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	return []member{{packager.PkgManifest, mb, -1, ""}, {packager.PkgSignature, packager.Sign(h.f.Priv, mb), -1, ""},
		{packager.PkgDelta, []byte("{}"), -1, ""}, {img.Path, data, -1, ""}}
}

// Members may come in any order: the pointer is still renamed last and the
// cut lands whole.
func TestReorderedMembersApply(t *testing.T) {
	h := newHostile(t)
	ms := cutMembers(t, h.f, 1, 2)
	files := ms[3:]
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	oc := runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, ms))
	if oc.err != nil || oc.res.Code != applyproto.OK {
		t.Fatalf("%v %+v", oc.err, oc.res)
	}
	sameTree(t, "cut 2", tree(t, h.dir), h.cut2(t))
}

// delta.json is not signed: its deleted list, whatever it names, deletes
// nothing. Only files of the previous signed manifest that the new one
// lacks are deleted, and only after the difusor's own retention.
func TestUnsignedDeletionsIgnored(t *testing.T) {
	h := newHostile(t)
	clock := time.Date(2024, 6, 2, 21, 0, 0, 0, time.UTC)
	h.opts.Now = func() time.Time { return clock }
	ms := cutMembers(t, h.f, 1, 2)
	dj, _ := json.Marshal(packager.DeltaInfo{Format: packager.DeltaFormat, ToSeq: 2, Deleted: []string{ownPage, "actas/001.jpg", ".prepcast/held/state.json"}})
	ms[2].data = dj
	if oc := runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, ms)); oc.err != nil {
		t.Fatal(oc.err)
	}
	sameTree(t, "cut 2", tree(t, h.dir), h.cut2(t))
	// Cut 3 arrives a minute later: json/c001 is still within the
	// retention, whatever the publisher thinks.
	h.f.Cut()
	clock = clock.Add(time.Minute)
	if oc := runApply(t, h.dir, h.opts, request(t, h.f, 3, h.f.Pub), craft(t, cutMembers(t, h.f, 2, 3))); oc.err != nil {
		t.Fatal(oc.err)
	}
	want := cutTree(t, h.f, 3, map[string]string{ownPage: "propia", "json/c001/totales.json": h.cut1["json/c001/totales.json"],
		"json/c002/totales.json": h.cut2(t)["json/c002/totales.json"]})
	sameTree(t, "cut 3 within the retention", tree(t, h.dir), want)
	// Cut 4, past the retention of c001 but not of c002 (retired at cut 3).
	h.f.Cut()
	clock = clock.Add(apply.DefaultRetention - 30*time.Second)
	if oc := runApply(t, h.dir, h.opts, request(t, h.f, 4, h.f.Pub), craft(t, cutMembers(t, h.f, 3, 4))); oc.err != nil || oc.res.Deleted != 1 {
		t.Fatalf("%v, deleted %d", oc.err, oc.res.Deleted)
	}
	want = cutTree(t, h.f, 4, map[string]string{ownPage: "propia", "json/c002/totales.json": want["json/c002/totales.json"],
		"json/c003/totales.json": want["json/c003/totales.json"]})
	sameTree(t, "cut 4", tree(t, h.dir), want)
}

// A forged ack naming an older cut does not open the way back: the kept
// signed manifest says which cut the difusor applied. The refusal does not
// tell anyone to move files away.
func TestRollbackRestsOnTheKeptManifest(t *testing.T) {
	h := newHostile(t)
	if oc := runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, cutMembers(t, h.f, 1, 2))); oc.err != nil {
		t.Fatal(oc.err)
	}
	// Someone writes the ack of cut 1 over it.
	_, mb1, sig1 := h.f.manifest(1)
	m1, _, _ := h.f.manifest(1)
	forged := &publisher.Ack{Format: publisher.AckFormat, Seq: 1, ID: m1.ID, Manifest: packager.Hash(mb1), Signature: packager.SignatureBase64(sig1), Time: time.Now()}
	if err := os.WriteFile(filepath.Join(h.dir, publisher.AckPath), forged.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	oc := runApply(t, h.dir, h.opts, request(t, h.f, 1, h.f.Pub), craft(t, cutMembers(t, h.f, 0, 1)))
	if oc.res.Code != applyproto.Rollback || !oc.res.Permanent || !strings.Contains(oc.res.Error, "applied cut 2") {
		t.Fatalf("code %q: %s", oc.res.Code, oc.res.Error)
	}
	if strings.Contains(oc.res.Error, "ack.json") || strings.Contains(oc.res.Error, "move") {
		t.Fatalf("the refusal advises moving files away: %s", oc.res.Error)
	}
	sameTree(t, "still cut 2", tree(t, h.dir), h.cut2(t))
}

// Without a key, apply refuses and says how to configure one; nothing is
// written, nothing pinned.
func TestNoKeyRefused(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	dir := t.TempDir()
	oc := runApply(t, dir, apply.Options{}, request(t, f, 1, f.Pub), craft(t, cutMembers(t, f, 0, 1)))
	if !errors.Is(oc.err, apply.ErrNoKey) || oc.res.Code != applyproto.Untrusted || !oc.res.Permanent ||
		!strings.Contains(oc.res.Error, "--public-key") || !strings.Contains(oc.res.Error, "--trust-on-first-use") {
		t.Fatalf("err %v, code %q: %s", oc.err, oc.res.Code, oc.res.Error)
	}
	if oc.hello.Trust != applyproto.TrustNone {
		t.Fatalf("greeting says trust %q", oc.hello.Trust)
	}
	sameTree(t, "empty root", tree(t, dir), map[string]string{})
	if _, err := os.Stat(filepath.Join(dir, apply.PinnedKeyPath)); err == nil {
		t.Fatal("a key was pinned")
	}
}

// Trust on first use: garbage, or a package that does not verify
// completely, under an unknown key pins nothing; the institute's first
// whole package then pins the institute's key.
func TestTrustOnFirstUsePinsOnlyAfterAWholePackage(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	dir := t.TempDir()
	opts := apply.Options{TrustOnFirstUse: true}
	attacker, attackerPriv, _ := ed25519.GenerateKey(rand.Reader)
	garbage := make([]byte, 25<<10)
	_, _ = rand.Read(garbage)
	ms := cutMembers(t, f, 0, 1)
	ms[1].data = packager.Sign(attackerPriv, ms[0].data)
	for _, tc := range []struct {
		name string
		pkg  []byte
		code string
	}{
		{"garbage", garbage, applyproto.BadPackage},
		{"signed by another key, a file missing", craft(t, without(ms, "actas/001.jpg")), applyproto.Incomplete},
		{"signed by another key, a file altered", craft(t, append(ms[:len(ms)-1:len(ms)-1], member{ms[len(ms)-1].name, bytes.ToUpper(ms[len(ms)-1].data), -1, ""})), applyproto.BadPackage},
	} {
		oc := runApply(t, dir, opts, request(t, f, 1, attacker), tc.pkg)
		if oc.res.Code != tc.code {
			t.Fatalf("%s: code %q: %s", tc.name, oc.res.Code, oc.res.Error)
		}
		if oc.hello.Trust != applyproto.TrustOnFirstUse {
			t.Fatalf("greeting says trust %q", oc.hello.Trust)
		}
		if _, err := os.Stat(filepath.Join(dir, apply.PinnedKeyPath)); err == nil {
			t.Fatalf("%s: the key was pinned", tc.name)
		}
		sameTree(t, tc.name, tree(t, dir), map[string]string{})
	}
	if oc := runApply(t, dir, opts, request(t, f, 1, f.Pub), craft(t, cutMembers(t, f, 0, 1))); oc.err != nil {
		t.Fatal(oc.err)
	}
	k, err := packager.LoadPublicKey(filepath.Join(dir, apply.PinnedKeyPath))
	if err != nil || !k.Equal(f.Pub) {
		t.Fatalf("pinned %v, %v", k, err)
	}
	sameTree(t, "cut 1", tree(t, dir), cutTree(t, f, 1, nil))
}

// A lock planted as a symbolic link is refused, never followed.
func TestLockSymlinkRefused(t *testing.T) {
	for _, link := range []string{apply.LockPath, safepath.Reserved} {
		t.Run(link, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			victim := filepath.Join(outside, "victim")
			if link == apply.LockPath {
				os.Mkdir(filepath.Join(root, safepath.Reserved), 0o755)
			} else {
				victim = outside
			}
			if err := os.Symlink(victim, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
			unlock, err := apply.LockRoot(context.Background(), root, time.Second)
			if err == nil {
				unlock()
				t.Fatal("lock taken through a symbolic link")
			}
			if !strings.Contains(err.Error(), "symbolic link") && !strings.Contains(err.Error(), "not a directory") {
				t.Fatalf("err = %v", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("something was created outside the root: %v", ents)
			}
		})
	}
}

// vanishing is a webroot whose staged file for one path disappears before
// the commit renames it: after the flush, or right before its rename.
type vanishing struct {
	*localfs.Target
	dir      string
	path     string // the entry whose staged file vanishes
	atRename bool
}

func (v *vanishing) SyncFiles(ctx context.Context, paths []string) error {
	if !v.atRename {
		v.drop()
	}
	return v.Target.SyncFiles(ctx, paths)
}

func (v *vanishing) Rename(ctx context.Context, oldpath, newpath string) error {
	if v.atRename && newpath == v.path {
		v.drop()
	}
	return v.Target.Rename(ctx, oldpath, newpath)
}

// drop removes the staged file of v.path: named by its content hash.
func (v *vanishing) drop() {
	ents, _ := os.ReadDir(filepath.Join(v.dir, publisher.StagingDir))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(v.dir, publisher.StagingDir, e.Name()))
		if strings.HasPrefix(string(b), "\ufeffGUBERNATURA") {
			os.Remove(filepath.Join(v.dir, publisher.StagingDir, e.Name()))
		}
	}
}

var _ targets.DeferredSyncer = (*vanishing)(nil)

func TestVanishedStagedFileIsAClearError(t *testing.T) {
	for _, atRename := range []bool{false, true} {
		h := newHostile(t)
		lt, err := localfs.New("webroot", h.dir)
		if err != nil {
			t.Fatal(err)
		}
		v := &vanishing{Target: lt, dir: h.dir, path: "datos/PUE_GUB_2024.csv", atRename: atRename}
		o := h.opts
		o.Target = v
		oc := runApply(t, h.dir, o, request(t, h.f, 2, h.f.Pub), craft(t, cutMembers(t, h.f, 1, 2)))
		lt.Close()
		if oc.res.Code != applyproto.Failed || !strings.Contains(oc.res.Error, "vanished before its rename") || !strings.Contains(oc.res.Error, "datos/PUE_GUB_2024.csv") {
			t.Fatalf("at rename %v: code %q: %s", atRename, oc.res.Code, oc.res.Error)
		}
		got := tree(t, h.dir)
		if got["json/main.json"] != h.cut1["json/main.json"] {
			t.Fatalf("at rename %v: the pointer switched to a cut with a file missing", atRename)
		}
		if !atRename {
			sameTree(t, "nothing renamed", got, h.cut1)
		}
		// The next attempt brings the cut whole.
		oc = runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, cutMembers(t, h.f, 1, 2)))
		if oc.err != nil {
			t.Fatal(oc.err)
		}
		sameTree(t, "cut 2", tree(t, h.dir), h.cut2(t))
	}
}

// A difusor that lost a file of its cut vouches for no cut, and a delta is
// then refused as incomplete: only the whole cut completes it.
func TestLostFileNeedsTheWholeCut(t *testing.T) {
	h := newHostile(t)
	if err := os.Remove(filepath.Join(h.dir, "actas", "001.jpg")); err != nil {
		t.Fatal(err)
	}
	oc := runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, cutMembers(t, h.f, 1, 2)))
	if oc.hello.AckSeq != 0 || oc.res.Code != applyproto.Incomplete || !strings.Contains(oc.res.Error, "actas/001.jpg") {
		t.Fatalf("greeting acks %d; code %q: %s", oc.hello.AckSeq, oc.res.Code, oc.res.Error)
	}
	oc = runApply(t, h.dir, h.opts, request(t, h.f, 2, h.f.Pub), craft(t, cutMembers(t, h.f, 0, 2)))
	if oc.err != nil {
		t.Fatal(oc.err)
	}
	sameTree(t, "cut 2", tree(t, h.dir), h.cut2(t))
}

// A root whose ack another push (over SFTP) rewrote since apply kept its
// manifest: apply vouches for no cut, so a delta cannot complete it and the
// whole cut does.
func TestAckWrittenByOtherMeansNeedsTheWholeCut(t *testing.T) {
	h := newHostile(t)
	m2, mb2, sig2 := h.f.manifest(2)
	a := &publisher.Ack{Format: publisher.AckFormat, Seq: 2, ID: m2.ID, Manifest: packager.Hash(mb2), Signature: packager.SignatureBase64(sig2), Time: time.Now()}
	if err := os.WriteFile(filepath.Join(h.dir, publisher.AckPath), a.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	h.f.Cut()
	oc := runApply(t, h.dir, h.opts, request(t, h.f, 3, h.f.Pub), craft(t, cutMembers(t, h.f, 2, 3)))
	if oc.hello.AckSeq != 0 || oc.res.Code != applyproto.Incomplete {
		t.Fatalf("greeting acks %d; code %q: %s", oc.hello.AckSeq, oc.res.Code, oc.res.Error)
	}
	if oc := runApply(t, h.dir, h.opts, request(t, h.f, 3, h.f.Pub), craft(t, cutMembers(t, h.f, 0, 3))); oc.err != nil {
		t.Fatal(oc.err)
	}
	got := tree(t, h.dir)
	for p, b := range cutTree(t, h.f, 3, nil) {
		if got[p] != b {
			t.Fatalf("%s is not cut 3's", p)
		}
	}
}
