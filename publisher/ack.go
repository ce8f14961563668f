package publisher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
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

// maxAckSize bounds an ack file; a larger one is garbage.
const maxAckSize = 16 << 20

// ParseAck decodes and checks an ack file. Any error means the ack cannot be
// trusted and the target must be reconciled.
func ParseAck(data []byte) (*Ack, error) {
	if len(data) > maxAckSize {
		return nil, fmt.Errorf("ack: %d bytes, more than %d", len(data), maxAckSize)
	}
	var a Ack
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	if dec.More() {
		return nil, errors.New("ack: data after the ack object")
	}
	switch {
	case a.Format != AckFormat:
		return nil, fmt.Errorf("ack: format %q, want %q", a.Format, AckFormat)
	case a.Seq < 1:
		return nil, fmt.Errorf("ack: seq %d", a.Seq)
	case !packager.IsSHA256Hex(a.Manifest):
		return nil, fmt.Errorf("ack: manifest_sha256 %q is not a SHA-256", a.Manifest)
	case a.Time.IsZero():
		return nil, errors.New("ack: no time")
	}
	for _, r := range a.Retired {
		if err := safepath.Check(r.Path); err != nil {
			return nil, fmt.Errorf("ack: retired: %w", err)
		}
	}
	return &a, nil
}

// Encode returns the ack as indented JSON.
func (a *Ack) Encode() []byte {
	b, _ := json.MarshalIndent(a, "", "  ")
	return append(b, '\n')
}
