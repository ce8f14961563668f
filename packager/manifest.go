package packager

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	_ "time/tzdata" // zones work on machines without a zoneinfo database

	"github.com/prepcast/prepcast/internal/safepath"
)

// ManifestFormat is the format tag every manifest carries.
const ManifestFormat = "prepcast-manifest/1"

// IDLayout is the time layout of a cut ID: YYYYMMDD_HHMMSS in the configured
// zone. Cut times are whole seconds and never go back, so ids sort as the
// cuts do; two cuts made in the same second would share an id, which
// [Store.Cut] prevents by giving the later one the next second.
const IDLayout = "20060102_150405"

// LegacyIDLayout is the layout of ids made before seconds were added
// (YYYYMMDD_HHMM). Manifests with such ids stay valid; an old id sorts
// before every new id of a later minute, so mixed lists keep their order.
const LegacyIDLayout = "20060102_1504"

// Entry is one regular file of a cut.
type Entry struct {
	Path   string `json:"path"`   // slash path relative to the results tree
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // lower-case hex of the content's SHA-256
}

// Manifest lists every regular file of one cut. Its canonical encoding (see
// [Manifest.Encode]) is what is hashed and signed.
type Manifest struct {
	Format   string    `json:"format"`
	Seq      int64     `json:"seq"`      // 1, 2, …
	ID       string    `json:"id"`       // YYYYMMDD_HHMMSS in Zone (YYYYMMDD_HHMM before seconds were added)
	Created  time.Time `json:"created"`  // when the cut was made, second precision
	Zone     string    `json:"zone"`     // IANA zone of ID and Created
	Prev     string    `json:"prev"`     // hex SHA-256 of the previous cut's manifest; "" for the first
	Pointers []string  `json:"pointers"` // files that switch the site to this cut, committed last
	Files    int       `json:"files"`    // len(Entries)
	Bytes    int64     `json:"bytes"`    // sum of Entries' sizes
	Entries  []Entry   `json:"entries"`  // sorted by Path, unique
}

// manifestHeader is the part of a manifest before its entries, in the
// canonical field order.
type manifestHeader struct {
	Format   string   `json:"format"`
	Seq      int64    `json:"seq"`
	ID       string   `json:"id"`
	Created  string   `json:"created"`
	Zone     string   `json:"zone"`
	Prev     string   `json:"prev"`
	Pointers []string `json:"pointers"`
	Files    int      `json:"files"`
	Bytes    int64    `json:"bytes"`
}

// Encode returns the manifest's canonical bytes: the header fields in fixed
// order on the first line, then one entry per line in path order, with no
// insignificant variation. Encoding the result of [ParseManifest] gives back
// the same bytes. Encode fails if the manifest is not valid (see [Manifest.Validate]).
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	loc, _ := time.LoadLocation(m.Zone) // Validate checked it
	h, err := marshal(manifestHeader{
		Format: m.Format, Seq: m.Seq, ID: m.ID, Created: m.Created.In(loc).Format(time.RFC3339),
		Zone: m.Zone, Prev: m.Prev, Pointers: nonNil(m.Pointers), Files: m.Files, Bytes: m.Bytes,
	})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(h) + 120*len(m.Entries) + 16)
	b.Write(h[:len(h)-1]) // drop the closing brace
	b.WriteString(",\"entries\":[")
	for i, e := range m.Entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n")
		if err := writeEntry(&b, e); err != nil {
			return nil, err
		}
	}
	b.WriteString("\n]}\n")
	return b.Bytes(), nil
}

// writeEntry writes e as compact JSON, byte for byte what marshal writes,
// and quickly when the path needs no escaping.
func writeEntry(b *bytes.Buffer, e Entry) error {
	if !plainJSON(e.Path) || !plainJSON(e.SHA256) {
		eb, err := marshal(e)
		if err != nil {
			return err
		}
		b.Write(eb)
		return nil
	}
	var num [20]byte
	b.WriteString(`{"path":"`)
	b.WriteString(e.Path)
	b.WriteString(`","size":`)
	b.Write(strconv.AppendInt(num[:0], e.Size, 10))
	b.WriteString(`,"sha256":"`)
	b.WriteString(e.SHA256)
	b.WriteString(`"}`)
	return nil
}

// plainJSON reports whether s is written as is between quotes by
// encoding/json without HTML escaping: valid UTF-8 with no quote,
// backslash, control character, U+2028 or U+2029.
func plainJSON(s string) bool {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"' || c == '\\':
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return ascii || (utf8.ValidString(s) && !strings.ContainsAny(s, "\u2028\u2029"))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// marshal encodes v as compact JSON without HTML escaping.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := b.Bytes()
	return out[:len(out)-1], nil // Encode appends a newline
}

// Validate checks the manifest's invariants: format tag, positive seq, an ID
// that matches Created in Zone, a well-formed Prev, entries sorted and unique
// with safe paths and well-formed hashes, Files and Bytes that add up, and
// pointers that name entries.
func (m *Manifest) Validate() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("manifest: format %q, want %q", m.Format, ManifestFormat)
	}
	if m.Seq < 1 {
		return fmt.Errorf("manifest: seq %d, want 1 or more", m.Seq)
	}
	loc, err := time.LoadLocation(m.Zone)
	if err != nil {
		return fmt.Errorf("manifest: zone %q: %w", m.Zone, err)
	}
	if want := m.Created.In(loc).Format(IDLayout); m.ID != want && m.ID != m.Created.In(loc).Format(LegacyIDLayout) {
		return fmt.Errorf("manifest: id %q does not match created %s (want %q)", m.ID, m.Created.Format(time.RFC3339), want)
	}
	if m.Created.Nanosecond() != 0 {
		return errors.New("manifest: created must have whole seconds")
	}
	if m.Prev != "" && !IsSHA256Hex(m.Prev) {
		return fmt.Errorf("manifest: prev %q is not a hex SHA-256", m.Prev)
	}
	if m.Seq == 1 && m.Prev != "" {
		return errors.New("manifest: the first cut has no previous manifest")
	}
	if m.Files != len(m.Entries) {
		return fmt.Errorf("manifest: files %d but %d entries", m.Files, len(m.Entries))
	}
	var total int64
	for i, e := range m.Entries {
		if err := safepath.Check(e.Path); err != nil {
			return fmt.Errorf("manifest: entry %d: %w", i, err)
		}
		if i > 0 && m.Entries[i-1].Path >= e.Path {
			return fmt.Errorf("manifest: entries not sorted and unique at %q", e.Path)
		}
		if e.Size < 0 {
			return fmt.Errorf("manifest: %s: negative size", e.Path)
		}
		if !IsSHA256Hex(e.SHA256) {
			return fmt.Errorf("manifest: %s: sha256 %q is not 64 lower-case hex digits", e.Path, e.SHA256)
		}
		total += e.Size
		if total < 0 {
			return errors.New("manifest: total size overflows")
		}
	}
	if total != m.Bytes {
		return fmt.Errorf("manifest: bytes %d but entries add up to %d", m.Bytes, total)
	}
	for i, p := range m.Pointers {
		if _, ok := m.Lookup(p); !ok {
			return fmt.Errorf("manifest: pointer %q is not a file of the cut", p)
		}
		if slices.Contains(m.Pointers[:i], p) {
			return fmt.Errorf("manifest: pointer %q listed twice", p)
		}
	}
	return nil
}

// Lookup returns the entry for path.
func (m *Manifest) Lookup(path string) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(m.Entries, path, func(e Entry, p string) int { return strings.Compare(e.Path, p) })
	if !ok {
		return Entry{}, false
	}
	return m.Entries[i], true
}

// IsPointer reports whether path is one of the manifest's pointer files.
func (m *Manifest) IsPointer(path string) bool { return slices.Contains(m.Pointers, path) }

// IsSHA256Hex reports whether s is a SHA-256 in 64 lower-case hex digits.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// MaxManifestSize bounds the manifest bytes [ParseManifest] accepts (a
// million entries fit).
const MaxManifestSize = 256 << 20

// ParseManifest decodes canonical manifest bytes. It rejects unknown fields,
// invalid manifests, and any encoding that is not byte-for-byte canonical,
// so that one cut's content has exactly one manifest hash.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: %d bytes, more than the %d accepted", len(data), MaxManifestSize)
	}
	var raw struct {
		manifestHeader
		Entries []Entry `json:"entries"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("manifest: data after the manifest object")
	}
	created, err := time.Parse(time.RFC3339, raw.Created)
	if err != nil {
		return nil, fmt.Errorf("manifest: created: %w", err)
	}
	m := &Manifest{
		Format: raw.Format, Seq: raw.Seq, ID: raw.ID, Created: created, Zone: raw.Zone, Prev: raw.Prev,
		Pointers: raw.Pointers, Files: raw.Files, Bytes: raw.Bytes, Entries: raw.Entries,
	}
	if m.Pointers == nil {
		m.Pointers = []string{}
	}
	if m.Entries == nil {
		m.Entries = []Entry{}
	}
	enc, err := m.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(enc, data) {
		return nil, errors.New("manifest: not in canonical form")
	}
	return m, nil
}

// Hash returns the hex SHA-256 of canonical manifest bytes: the name of a
// cut's content.
func Hash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// sigPrefix starts a signature file; the base64 signature follows.
const sigPrefix = "ed25519 "

// Sign returns the signature file for canonical manifest bytes: one line,
// "ed25519 " and the base64 of the ed25519 signature over the bytes.
func Sign(key ed25519.PrivateKey, canonical []byte) []byte {
	sig := ed25519.Sign(key, canonical)
	return []byte(sigPrefix + base64.StdEncoding.EncodeToString(sig) + "\n")
}

// ErrBadSignature is wrapped by every error [Verify] returns for a signature
// that does not match.
var ErrBadSignature = errors.New("manifest signature does not verify")

// Verify checks a signature file made by [Sign] against canonical manifest
// bytes and a public key.
func Verify(pub ed25519.PublicKey, canonical, sigFile []byte) error {
	s := strings.TrimSuffix(string(sigFile), "\n")
	if !strings.HasPrefix(s, sigPrefix) {
		return fmt.Errorf("%w: signature file does not start with %q", ErrBadSignature, sigPrefix)
	}
	sig, err := base64.StdEncoding.DecodeString(s[len(sigPrefix):])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed signature", ErrBadSignature)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key has %d bytes", ErrBadSignature, len(pub))
	}
	if !ed25519.Verify(pub, canonical, sig) {
		return ErrBadSignature
	}
	return nil
}

// SignatureBase64 returns the base64 signature held in a signature file.
func SignatureBase64(sigFile []byte) string {
	return strings.TrimPrefix(strings.TrimSuffix(string(sigFile), "\n"), sigPrefix)
}
