package publisher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
)

// AckPath is where a target records the cut it fully holds.
const AckPath = safepath.Reserved + "/ack.json"

// StagingDir is where files are uploaded before they are renamed into place.
const StagingDir = safepath.Reserved + "/staging"

// AckFormat is the format tag of ack.json.
const AckFormat = "prepcast-ack/1"

// Ack is a target's record that it fully holds a cut: written on the target
// after the pointer files switched. It is the truth about the target; the
// local state mirrors it.
type Ack struct {
	Format    string    `json:"format"`
	Seq       int64     `json:"seq"`
	ID        string    `json:"id"`
	Manifest  string    `json:"manifest_sha256"` // hex SHA-256 of the cut's canonical manifest
	Signature string    `json:"signature"`       // base64 ed25519 signature of that manifest
	Time      time.Time `json:"time"`            // when the pointer switched
	Publisher string    `json:"publisher,omitempty"`
	// Retired lists files that left the manifest and are deleted once the
	// retention window after Since has passed.
	Retired []Retired `json:"retired,omitempty"`
}

// Retired is a file that left the manifest at Since.
type Retired struct {
	Path  string    `json:"path"`
	Since time.Time `json:"since"`
}

// MaxAckSize bounds any ack file; a larger one is garbage.
const MaxAckSize = 16 << 20

// AckMax is the most bytes an ack of a cut of files entries may hold, and
// the most prepcast reads of a difusor's ack.json: 64 KiB for its fixed
// fields and, for the retired list, 512 bytes (a path of at most a few
// hundred bytes and a time) for up to 4 × the cut's files: the list holds
// every file that left the cut within the retention window, which can be
// several cuts' worth when cuts come fast. Never more than MaxAckSize. An
// ack.json that is larger (or a link to /dev/zero) is refused after
// AckMax+1 bytes.
func AckMax(files int) int64 {
	return min(64<<10+4*512*int64(max(files, 0)), MaxAckSize)
}

// ParseAck decodes and checks an ack file. Any error means the ack cannot be
// trusted and the target must be reconciled. Text from the ack is escaped
// in its errors.
func ParseAck(data []byte) (*Ack, error) {
	if len(data) > MaxAckSize {
		return nil, fmt.Errorf("ack: %d bytes, more than %d", len(data), MaxAckSize)
	}
	var a Ack
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("ack: %s", termsafe.Clip(err.Error(), 200))
	}
	if dec.More() {
		return nil, errors.New("ack: data after the ack object")
	}
	switch {
	case a.Format != AckFormat:
		return nil, fmt.Errorf("ack: format %q, want %q", termsafe.Clip(a.Format, 40), AckFormat)
	case a.Seq < 1:
		return nil, fmt.Errorf("ack: seq %d", a.Seq)
	case !packager.IsSHA256Hex(a.Manifest):
		return nil, fmt.Errorf("ack: manifest_sha256 %q is not a SHA-256", termsafe.Clip(a.Manifest, 80))
	case a.Time.IsZero():
		return nil, errors.New("ack: no time")
	case !isCutID(a.ID):
		return nil, fmt.Errorf("ack: id %q is not a cut id (%s)", termsafe.Clip(a.ID, 40), packager.IDLayout)
	case len(a.Publisher) > 255 || termsafe.String(a.Publisher) != a.Publisher:
		return nil, fmt.Errorf("ack: publisher %q is not a host name", termsafe.Clip(a.Publisher, 40))
	}
	for _, r := range a.Retired {
		if err := safepath.Check(r.Path); err != nil {
			return nil, fmt.Errorf("ack: retired: %s", termsafe.Clip(err.Error(), 200))
		}
		if termsafe.String(r.Path) != r.Path {
			return nil, fmt.Errorf("ack: retired path %q holds characters that are not printable", termsafe.Clip(r.Path, 80))
		}
	}
	return &a, nil
}

// Encode returns the ack as indented JSON.
func (a *Ack) Encode() []byte {
	b, _ := json.MarshalIndent(a, "", "  ")
	return append(b, '\n')
}

// isCutID reports whether s has the form of a cut id, YYYYMMDD_HHMM.
func isCutID(s string) bool {
	for _, layout := range []string{packager.IDLayout, packager.LegacyIDLayout} {
		if _, err := time.Parse(layout, s); err == nil && len(s) == len(layout) {
			return true
		}
	}
	return false
}
