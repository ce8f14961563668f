package packager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
)

// The published proof of a cut: what a verifier needs to check a difusor
// against the institute's signature, served by the difusor's web server
// below ProofDir (an RFC 8615 well-known path):
//
//	.well-known/prepcast/index.json                      the retained cuts (replaced atomically)
//	.well-known/prepcast/cuts/000042-<sha256 hex>.json   cut 42's canonical manifest, byte for byte
//	.well-known/prepcast/cuts/000042-<sha256 hex>.sig    its signature file (see [Sign])
//
// A cut's files never change once written (their names carry the seq and
// the manifest's SHA-256). The index is written before the pointer switches,
// so a verifier that finds a new pointer finds its manifest listed.
const (
	ProofDir         = safepath.PublicReserved
	ProofIndexPath   = ProofDir + "/index.json"
	ProofCutsDir     = ProofDir + "/cuts"
	ProofIndexFormat = "prepcast-proof-index/1"
	// MaxProofIndexSize bounds an index file; a larger one is garbage.
	MaxProofIndexSize = 1 << 20
)

// ProofName is the base name (without extension) of cut seq's proof files:
// "000042-<manifest sha256 hex>".
func ProofName(seq int64, manifestSHA string) string {
	return fmt.Sprintf("%06d-%s", seq, manifestSHA)
}

// ProofManifestPath and ProofSignaturePath are the root-relative paths of a
// cut's published manifest and signature.
func ProofManifestPath(seq int64, manifestSHA string) string {
	return ProofCutsDir + "/" + ProofName(seq, manifestSHA) + ".json"
}

// ProofSignaturePath is the root-relative path of a cut's published signature.
func ProofSignaturePath(seq int64, manifestSHA string) string {
	return ProofCutsDir + "/" + ProofName(seq, manifestSHA) + ".sig"
}

// ProofCut is one cut listed in the proof index. The index is not signed:
// a verifier trusts only the manifest it names, once the manifest's hash and
// signature check.
type ProofCut struct {
	Seq       int64     `json:"seq"`
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	Manifest  string    `json:"manifest_sha256"` // hex SHA-256 of the canonical manifest
	Size      int64     `json:"manifest_bytes"`  // length of the canonical manifest
	Files     int       `json:"files"`           // files in the cut
	ManFile   string    `json:"manifest"`        // relative to the index: cuts/<name>.json
	SigFile   string    `json:"signature"`       // relative to the index: cuts/<name>.sig
	Published time.Time `json:"published"`       // when this difusor listed it
	// Replaced is when a newer cut was listed after this one; the cut's
	// proof is kept for the retention window after that, like its files.
	Replaced *time.Time `json:"replaced,omitempty"`
}

// ProofIndex lists the cuts whose proof a difusor holds, oldest first.
type ProofIndex struct {
	Format string     `json:"format"`
	Cuts   []ProofCut `json:"cuts"`
}

// NewProofCut describes cut m (whose canonical bytes are canonical) for the
// index.
func NewProofCut(m *Manifest, canonical []byte, published time.Time) ProofCut {
	sha := Hash(canonical)
	name := ProofName(m.Seq, sha)
	return ProofCut{Seq: m.Seq, ID: m.ID, Created: m.Created.UTC(), Manifest: sha, Size: int64(len(canonical)),
		Files: m.Files, ManFile: "cuts/" + name + ".json", SigFile: "cuts/" + name + ".sig", Published: published.UTC()}
}

// Encode returns the index as indented JSON, cuts sorted by seq.
func (x *ProofIndex) Encode() []byte {
	sort.Slice(x.Cuts, func(i, j int) bool { return x.Cuts[i].Seq < x.Cuts[j].Seq })
	if x.Cuts == nil {
		x.Cuts = []ProofCut{}
	}
	b, _ := json.MarshalIndent(x, "", "  ")
	return append(b, '\n')
}

// ParseProofIndex decodes and checks an index (which came from a web site or
// a difusor: hostile). Every listed cut has a positive seq, a well-formed
// manifest hash and the file names [ProofName] gives it; the result is
// sorted by seq, newest last.
func ParseProofIndex(data []byte) (*ProofIndex, error) {
	if len(data) > MaxProofIndexSize {
		return nil, fmt.Errorf("proof index: %d bytes, more than %d", len(data), MaxProofIndexSize)
	}
	var x ProofIndex
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("proof index: %w", err)
	}
	if x.Format != ProofIndexFormat {
		return nil, fmt.Errorf("proof index: format %q, want %q", x.Format, ProofIndexFormat)
	}
	for _, c := range x.Cuts {
		name := ProofName(c.Seq, c.Manifest)
		switch {
		case c.Seq < 1:
			return nil, fmt.Errorf("proof index: seq %d", c.Seq)
		case !IsSHA256Hex(c.Manifest):
			return nil, errors.New("proof index: a manifest_sha256 is not a SHA-256")
		case c.ManFile != "cuts/"+name+".json" || c.SigFile != "cuts/"+name+".sig":
			return nil, fmt.Errorf("proof index: cut %d names files other than cuts/%s.json and .sig", c.Seq, name)
		}
	}
	sort.Slice(x.Cuts, func(i, j int) bool { return x.Cuts[i].Seq < x.Cuts[j].Seq })
	return &x, nil
}
