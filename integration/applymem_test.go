package integration

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/prepcast/prepcast/applyproto"
	"github.com/prepcast/prepcast/packager"
)

// applyRSSLimit is the most resident memory "prepcast apply" may reach on
// any input.
const applyRSSLimit = 64 << 20

// TestPackageApplyMemoryOnHostileInput runs "prepcast apply" (the binary
// under test) on hostile inputs and measures its peak resident memory
// (getrusage's ru_maxrss): each must be refused, the root left empty, and
// the peak stay under 64 MB.
func TestPackageApplyMemoryOnHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	bin := buildPrepcast(t)
	maxrss := filepath.Join(t.TempDir(), "maxrss")
	if out, err := exec.Command("go", "build", "-o", maxrss, "./testdata/maxrss").CombinedOutput(); err != nil {
		t.Fatalf("build maxrss: %v\n%s", err, out)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pubFile := filepath.Join(t.TempDir(), "institute.pub")
	if err := os.WriteFile(pubFile, packager.EncodePublicKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	tarOf := func(hdrs ...tarMember) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hdrs {
			_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: h.name, Size: h.size, Mode: 0o644})
			switch {
			case h.data != nil:
				_, _ = tw.Write(h.data)
			case h.size <= 64<<20:
				_, _ = io.CopyN(tw, zeros{}, h.size)
			} // else only the header: apply must refuse it there
		}
		_ = tw.Flush()
		return b.Bytes()
	}
	// A manifest header that claims a million entries, padded to the
	// 16 MiB the difusor accepts.
	bigHead := []byte(`{"format":"prepcast-manifest/1","seq":1,"id":"20240602_2000","created":"2024-06-02T20:00:00-06:00","zone":"America/Mexico_City","prev":"","pointers":[],"files":1000000,"bytes":0,"entries":[` + "\n")
	bigManifest := append(bigHead, bytes.Repeat([]byte(" "), 16<<20-len(bigHead))...)
	// A genuine signed manifest naming one 48 MiB file, whose member is a
	// zstd bomb of zeros that does not match it.
	bombData := int64(48 << 20)
	bombSum := sha256.Sum256([]byte("not zeros"))
	loc, _ := time.LoadLocation("America/Mexico_City")
	created := time.Date(2024, 6, 2, 20, 0, 0, 0, loc)
	m := &packager.Manifest{Format: packager.ManifestFormat, Seq: 1, ID: created.Format(packager.IDLayout), Created: created,
		Zone: "America/Mexico_City", Pointers: []string{}, Files: 1, Bytes: bombData,
		Entries: []packager.Entry{{Path: "actas/bomba.jpg", Size: bombData, SHA256: hex.EncodeToString(bombSum[:])}}}
	mb, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sig := packager.Sign(priv, mb) // signed for real: the member is what is hostile
	garbage := make([]byte, 25<<10)
	_, _ = rand.Read(garbage)
	skippable := append([]byte{0x50, 0x2a, 0x4d, 0x18, 0xf8, 0xff, 0x00, 0x00}, make([]byte, 0xfff8)...)

	// A root holding a signed cut with a database of the most a delta
	// starts from, and a signed next cut whose database comes as a delta
	// that decodes, against it, to as many zeros, which it does not list.
	baseData := bytes.Repeat([]byte("'210001B0100',12,34,CAPTURADA\n"), packager.MaxDeltaBase/30)
	deltaCut := func(seq int64, data []byte) ([]byte, []byte) {
		sum := sha256.Sum256(data)
		if seq == 2 {
			sum = sha256.Sum256([]byte("not zeros"))
		}
		c := created.Add(time.Duration(seq) * time.Minute)
		m := &packager.Manifest{Format: packager.ManifestFormat, Seq: seq, ID: c.Format(packager.IDLayout), Created: c,
			Zone: "America/Mexico_City", Pointers: []string{}, Files: 1, Bytes: int64(len(data)),
			Entries: []packager.Entry{{Path: "datos/base.csv", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}}}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b, packager.Sign(priv, b)
	}
	baseMB, baseSig := deltaCut(1, baseData)
	bombMB, bombSig := deltaCut(2, make([]byte, len(baseData)))
	bomb, err := packager.EncodeDelta(baseData, make([]byte, len(baseData)))
	if err != nil {
		t.Fatal(err)
	}
	var bombTar bytes.Buffer
	btw := tar.NewWriter(&bombTar)
	for _, h := range []*tar.Header{
		{Name: packager.PkgManifest, Size: int64(len(bombMB))}, {Name: packager.PkgSignature, Size: int64(len(bombSig))},
		{Name: packager.PkgDelta, Size: 2},
		{Name: "datos/base.csv", Size: int64(len(bomb)), PAXRecords: map[string]string{packager.PAXDeltaBase: sha256Hex(baseData)}},
	} {
		h.Typeflag, h.Mode, h.Format = tar.TypeReg, 0o644, tar.FormatPAX
		_ = btw.WriteHeader(h)
		switch h.Name {
		case packager.PkgManifest:
			_, _ = btw.Write(bombMB)
		case packager.PkgSignature:
			_, _ = btw.Write(bombSig)
		case packager.PkgDelta:
			_, _ = btw.Write([]byte("{}"))
		default:
			_, _ = btw.Write(bomb)
		}
	}
	_ = btw.Close()
	holdBase := func(t *testing.T, root string) {
		pkg := enc.EncodeAll(tarOf(tarMember{packager.PkgManifest, int64(len(baseMB)), baseMB},
			tarMember{packager.PkgSignature, int64(len(baseSig)), baseSig}, tarMember{packager.PkgDelta, 2, []byte("{}")},
			tarMember{"datos/base.csv", int64(len(baseData)), baseData}), nil)
		line, _ := json.Marshal(applyproto.Request{Format: applyproto.Format, PublicKey: base64.StdEncoding.EncodeToString(pub),
			PackageSize: int64(len(pkg)), ToSeq: 1, ToManifest: packager.Hash(baseMB)})
		cmd := exec.Command(bin, "apply", "--root", root, "--public-key", pubFile)
		cmd.Stdin = io.MultiReader(bytes.NewReader(append(line, '\n')), bytes.NewReader(pkg))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apply the base cut: %v\n%s", err, out)
		}
	}

	for _, tc := range []struct {
		name     string
		args     []string
		pkg      io.Reader // nil: stdin is raw below
		size     int64
		raw      io.Reader // stdin as is, no request line
		refusal  string
		prep     func(t *testing.T, root string)
		manifest []byte // the cut the request names; default mb
		keep     []string
	}{
		{name: "a 1 GB ack.json and the record linked to /dev/zero", pkg: bytes.NewReader(garbage), refusal: "bad-package", prep: func(t *testing.T, root string) {
			dir := filepath.Join(root, ".prepcast", "held")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/zero", filepath.Join(dir, "state.json")); err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(filepath.Join(root, ".prepcast", "ack.json"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(1 << 30); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "request line of 100 MB", raw: io.LimitReader(repeat('x'), 100<<20), refusal: "too long"},
		{name: "metadata members claiming 256 MiB each", pkg: bytes.NewReader(enc.EncodeAll(tarOf(
			tarMember{packager.PkgManifest, 256 << 20, nil}), nil)), refusal: "bad-package"},
		{name: "16 MiB manifest claiming a million entries", pkg: bytes.NewReader(enc.EncodeAll(tarOf(
			tarMember{packager.PkgManifest, int64(len(bigManifest)), bigManifest},
			tarMember{packager.PkgSignature, 97, bytes.Repeat([]byte("A"), 97)},
			tarMember{packager.PkgDelta, 2, []byte("{}")}), nil)), refusal: "key-mismatch"},
		{name: "zstd frame asking for a 2 GiB window", pkg: bytes.NewReader([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00}), refusal: "bad-package"},
		{name: "200 MB of skippable frames", pkg: io.LimitReader(cycle(skippable), 200<<20), size: 200 << 20, refusal: "bad-package"},
		{name: "25 KB of garbage under an unknown key", args: []string{"--trust-on-first-use"}, pkg: bytes.NewReader(garbage), refusal: "bad-package"},
		{name: "signed manifest, 48 MiB member that is a zstd bomb of zeros", pkg: bytes.NewReader(enc.EncodeAll(tarOf(
			tarMember{packager.PkgManifest, int64(len(mb)), mb},
			tarMember{packager.PkgSignature, int64(len(sig)), sig},
			tarMember{packager.PkgDelta, 2, []byte("{}")},
			tarMember{"actas/bomba.jpg", bombData, nil}), nil)), refusal: "does not match"},
		{name: "signed cut whose 8 MiB database is a delta decoding to zeros", pkg: bytes.NewReader(enc.EncodeAll(bombTar.Bytes(), nil)),
			refusal: "does not match", prep: holdBase, manifest: bombMB, keep: []string{"datos", ".well-known"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.prep != nil {
				tc.prep(t, root)
			}
			args := append([]string{"apply", "--root", root}, tc.args...)
			if len(tc.args) == 0 {
				args = append(args, "--public-key", pubFile)
			}
			rssFile := filepath.Join(t.TempDir(), "rss")
			cmd := exec.Command(maxrss, append([]string{rssFile, bin}, args...)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			in := tc.raw
			if in == nil {
				data, size := readerSize(t, tc.pkg, tc.size)
				reqMB := mb
				if tc.manifest != nil {
					reqMB = tc.manifest
				}
				rm, err := packager.ParseManifest(reqMB)
				if err != nil {
					t.Fatal(err)
				}
				req := applyproto.Request{Format: applyproto.Format, PublicKey: base64.StdEncoding.EncodeToString(pub),
					PackageSize: size, ToSeq: rm.Seq, ToManifest: packager.Hash(reqMB)}
				line, _ := json.Marshal(req)
				in = io.MultiReader(bytes.NewReader(append(line, '\n')), data)
			}
			cmd.Stdin = in
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			if err == nil {
				t.Fatalf("apply accepted a hostile input: %s", stdout.String())
			}
			rssText, rerr := os.ReadFile(rssFile)
			rss, perr := strconv.ParseInt(string(rssText), 10, 64)
			if rerr != nil || perr != nil {
				t.Fatalf("peak RSS not measured: %v %v; %s", rerr, perr, stderr.String())
			}
			t.Logf("peak RSS %.1f MB in %v: %s", float64(rss)/1e6, took.Round(time.Millisecond), lastLine(stdout.String()+stderr.String()))
			if !strings.Contains(stdout.String()+stderr.String(), tc.refusal) {
				t.Errorf("refusal does not mention %q: %s %s", tc.refusal, stdout.String(), stderr.String())
			}
			if rss > applyRSSLimit {
				t.Errorf("peak RSS %d bytes, more than %d", rss, applyRSSLimit)
			}
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if e.Name() != ".prepcast" && !slices.Contains(tc.keep, e.Name()) {
					t.Errorf("%s appeared in the root", e.Name())
				}
			}
		})
	}
}

type tarMember struct {
	name string
	size int64
	data []byte
}

// readerSize returns r and its size: size if given, else r read whole.
func readerSize(t *testing.T, r io.Reader, size int64) (io.Reader, int64) {
	if size > 0 {
		return r, size
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b), int64(len(b))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// repeat yields the byte c forever.
type repeat byte

func (c repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// cycle yields b over and over.
func cycle(b []byte) io.Reader { return &cycler{b: b} }

type cycler struct {
	b   []byte
	off int
}

func (c *cycler) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.b[c.off:])
		n += k
		c.off = (c.off + k) % len(c.b)
	}
	return n, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
