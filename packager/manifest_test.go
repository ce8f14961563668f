package packager

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"
)

func testManifest(t testing.TB, seq int64, entries ...Entry) *Manifest {
	t.Helper()
	loc, err := time.LoadLocation("America/Mexico_City")
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2024, 6, 2, 20, 0, 0, 0, loc).Add(time.Duration(seq) * 15 * time.Minute)
	m := &Manifest{Format: ManifestFormat, Seq: seq, ID: created.Format(IDLayout), Created: created,
		Zone: "America/Mexico_City", Pointers: []string{}, Entries: entries, Files: len(entries)}
	for _, e := range entries {
		m.Bytes += e.Size
		if e.Path == "json/main.json" {
			m.Pointers = []string{"json/main.json"}
		}
	}
	if seq > 1 {
		m.Prev = strings.Repeat("ab", 32)
	}
	return m
}

func sha(c byte) string { return strings.Repeat(string([]byte{c}), 64) }

func TestManifestCanonicalRoundTrip(t *testing.T) {
	m := testManifest(t, 2,
		Entry{"actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg", 312345, sha('1')},
		Entry{"datos/PUE_GUB_2024.csv", 3700000, sha('2')},
		Entry{"json/main.json", 812, sha('3')},
		Entry{"json/ñandú &+.json", 5, sha('4')},
	)
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"format":"prepcast-manifest/1","seq":2,"id":"20240602_203000","created":"2024-06-02T20:30:00-06:00","zone":"America/Mexico_City","prev":"` + strings.Repeat("ab", 32) + `","pointers":["json/main.json"],"files":4,"bytes":4013162,"entries":[
{"path":"actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg","size":312345,"sha256":"` + sha('1') + `"},
{"path":"datos/PUE_GUB_2024.csv","size":3700000,"sha256":"` + sha('2') + `"},
{"path":"json/main.json","size":812,"sha256":"` + sha('3') + `"},
{"path":"json/ñandú &+.json","size":5,"sha256":"` + sha('4') + `"}
]}
`
	if string(enc) != want {
		t.Fatalf("canonical form:\n%s\nwant:\n%s", enc, want)
	}
	back, err := ParseManifest(enc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := back.Encode()
	if err != nil || !bytes.Equal(again, enc) {
		t.Fatalf("re-encoding a parsed manifest changed it (%v)", err)
	}
	if !back.Created.Equal(m.Created) {
		t.Errorf("created %v, want %v", back.Created, m.Created)
	}
}

func TestParseManifestRejects(t *testing.T) {
	good, err := testManifest(t, 1, Entry{"a", 1, sha('1')}, Entry{"b", 2, sha('2')}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
	}{
		{"not canonical spacing", `"seq":1,`, `"seq": 1,`},
		{"unknown field", `"seq":1,`, `"seq":1,"extra":true,`},
		{"unsorted", `"path":"a"`, `"path":"c"`},
		{"traversal", `"path":"a"`, `"path":"../a"`},
		{"absolute", `"path":"a"`, `"path":"/etc/passwd"`},
		{"reserved", `"path":"a"`, `"path":".prepcast/ack.json"`},
		{"bad hash", sha('1'), strings.Repeat("X", 64)},
		{"size sum", `"bytes":3`, `"bytes":4`},
		{"files count", `"files":2`, `"files":3`},
		{"id mismatch", `"id":"20240602_201500"`, `"id":"20240602_201600"`},
		{"id seconds mismatch", `"id":"20240602_201500"`, `"id":"20240602_201501"`},
		{"trailing data", "]}\n", "]}\n{}"},
		{"prev on first", `"prev":""`, `"prev":"` + sha('a') + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(string(good), tt.old, tt.new, 1)
			if bad == string(good) {
				t.Fatalf("test edit %q did not apply", tt.old)
			}
			if _, err := ParseManifest([]byte(bad)); err == nil {
				t.Errorf("ParseManifest accepted %s", tt.name)
			}
		})
	}
	if _, err := ParseManifest(good); err != nil {
		t.Fatalf("good manifest rejected: %v", err)
	}
}

func TestManifestPointerMustBeEntry(t *testing.T) {
	m := testManifest(t, 1, Entry{"a", 1, sha('1')})
	m.Pointers = []string{"json/main.json"}
	if _, err := m.Encode(); err == nil {
		t.Fatal("a pointer that is not a file of the cut was accepted")
	}
}

func TestSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	data, err := testManifest(t, 1, Entry{"json/main.json", 10, sha('1')}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	sig := Sign(priv, data)
	if err := Verify(pub, data, sig); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	for i := range data {
		flipped := bytes.Clone(data)
		flipped[i] ^= 1
		if err := Verify(pub, flipped, sig); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("a one-bit change at byte %d still verifies", i)
		}
	}
	if err := Verify(otherPub, data, sig); !errors.Is(err, ErrBadSignature) {
		t.Error("another key verifies the signature")
	}
	badSig := bytes.Clone(sig)
	badSig[10] ^= 1
	if err := Verify(pub, data, badSig); !errors.Is(err, ErrBadSignature) {
		t.Error("a damaged signature verifies")
	}
}

func TestComputeDelta(t *testing.T) {
	from := testManifest(t, 1,
		Entry{"a.json", 1, sha('1')}, Entry{"b.jpg", 2, sha('2')}, Entry{"c.csv", 3, sha('3')}, Entry{"old.zip", 4, sha('4')})
	to := testManifest(t, 2,
		Entry{"a.json", 1, sha('9')}, Entry{"b.jpg", 2, sha('2')}, Entry{"c.csv", 3, sha('3')}, Entry{"d.jpg", 5, sha('5')}, Entry{"new.zip", 6, sha('6')})
	d := ComputeDelta(from, to)
	var changed []string
	for _, e := range d.Changed {
		changed = append(changed, e.Path)
	}
	if got, want := strings.Join(changed, ","), "a.json,d.jpg,new.zip"; got != want {
		t.Errorf("changed = %s, want %s", got, want)
	}
	if got, want := strings.Join(d.Deleted, ","), "old.zip"; got != want {
		t.Errorf("deleted = %s, want %s", got, want)
	}
	if d.Bytes() != 12 {
		t.Errorf("bytes = %d, want 12", d.Bytes())
	}
	full := ComputeDelta(nil, to)
	if len(full.Changed) != 5 || len(full.Deleted) != 0 {
		t.Errorf("delta from nothing: %d changed, %d deleted", len(full.Changed), len(full.Deleted))
	}
	if !ComputeDelta(to, to).Empty() {
		t.Error("delta of a manifest to itself is not empty")
	}
}

func FuzzParseManifest(f *testing.F) {
	good, _ := testManifest(f, 1, Entry{"a", 1, sha('1')}, Entry{"json/main.json", 2, sha('2')}).Encode()
	f.Add(good)
	f.Add([]byte(`{"format":"prepcast-manifest/1"}`))
	f.Add([]byte(`{"entries":[{"path":"../x","size":1,"sha256":""}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatalf("accepted manifest does not re-encode to itself: %v", err)
		}
		for _, e := range m.Entries {
			if strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") {
				t.Fatalf("accepted unsafe path %q", e.Path)
			}
		}
	})
}

// The quick entry writer writes what encoding/json writes, for every kind
// of path.
func TestWriteEntryMatchesEncodingJSON(t *testing.T) {
	paths := []string{"json/main.json", "actas/GUB/Gubernatura_024_TEHUACÁN_1972_B01.jpg", "a\"b", `a\b`, "tab\there",
		"line\u2028sep", "para\u2029sep", "bad\xffutf8", "ñ/ü/€/𝄞", "<html>&amp;", "del\x7f", "", "\x00"}
	rng := mrand.New(mrand.NewPCG(7, 8))
	alphabet := []rune{'a', '/', '"', '\\', '\n', 0x1f, 0x7f, 'é', '€', 0x2028, 0x2029, '<', '&', 0xfffd}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(12) {
			if rng.IntN(20) == 0 {
				b.WriteByte(byte(0x80 + rng.IntN(0x80))) // a stray byte: invalid UTF-8
				continue
			}
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		paths = append(paths, b.String())
	}
	for _, p := range paths {
		e := Entry{Path: p, Size: rng.Int64N(1 << 40), SHA256: strings.Repeat("0f", 32)}
		want, err := marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeEntry(&got, e); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want) {
			t.Fatalf("path %q: wrote %s, encoding/json writes %s", p, got.String(), want)
		}
	}
}

func BenchmarkManifestEncode(b *testing.B) {
	m := &Manifest{Format: ManifestFormat, Seq: 1, ID: "20240602_2000", Zone: "America/Mexico_City", Pointers: []string{}}
	m.Created, _ = time.Parse(time.RFC3339, "2024-06-02T20:00:00-06:00")
	for i := range 20000 {
		m.Entries = append(m.Entries, Entry{Path: fmt.Sprintf("actas/GUB/%06d.jpg", i), Size: int64(i), SHA256: strings.Repeat("ab", 32)})
		m.Bytes += int64(i)
	}
	m.Files = len(m.Entries)
	b.ResetTimer()
	for range b.N {
		if _, err := m.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}
