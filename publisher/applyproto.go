package publisher

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ApplyFormat tags every message of the package-mode exchange between
// "prepcast push" and "prepcast apply". Messages are JSON objects, one per
// line:
//
//  1. apply → push: a greeting (applyHello) with the cut the difusor holds;
//  2. push → apply: a request (applyRequest), then exactly PackageSize bytes
//     of package;
//  3. apply → push: the outcome (applyResult), after the pointer switched
//     and the ack was written, or after nothing changed.
const ApplyFormat = "prepcast-apply/1"

// maxApplyLine bounds one protocol line.
const maxApplyLine = 1 << 20

// applyHello is the first line "prepcast apply" prints.
type applyHello struct {
	Format      string `json:"format"`
	Version     string `json:"version"`
	AckSeq      int64  `json:"ack_seq"`      // 0 when the difusor holds no (readable) ack
	AckManifest string `json:"ack_manifest"` // hex SHA-256, "" with AckSeq 0
}

// applyRequest follows the greeting.
type applyRequest struct {
	Format          string    `json:"format"`
	Publisher       string    `json:"publisher"`
	Now             time.Time `json:"now"`              // the publisher's clock, for the retention window
	RetentionWindow int64     `json:"retention_window"` // nanoseconds
	PublicKey       string    `json:"public_key"`       // base64 ed25519 key the cut is signed with
	PackageSize     int64     `json:"package_size"`     // bytes of package that follow the line
	FromSeq         int64     `json:"from_seq"`         // the cut the package starts from (0 = nothing)
	ToSeq           int64     `json:"to_seq"`           // the cut it brings
	ToManifest      string    `json:"to_manifest"`      // hex SHA-256 of that cut's manifest
	FilesInFlight   int       `json:"files_in_flight"`  // renames at once on the difusor (0 = default)
}

// Result codes of applyResult.
const (
	applyOK          = "ok"
	applyBaseChanged = "base-changed" // the difusor's ack is not the package's origin
	applyRollback    = "rollback"     // the difusor holds a newer or different cut
	applyBadPackage  = "bad-package"  // the package failed a check; nothing was committed
	applyKeyMismatch = "key-mismatch" // the cut is signed with a key the difusor does not trust
	applyFailed      = "failed"       // anything else (I/O, full disk, ...)
)

// applyResult is the last line "prepcast apply" prints.
type applyResult struct {
	Format    string          `json:"format"`
	Code      string          `json:"code"`
	Error     string          `json:"error,omitempty"`
	Permanent bool            `json:"permanent,omitempty"` // no retry can fix it
	Ack       json.RawMessage `json:"ack,omitempty"`       // the ack written (code ok)
	Files     int             `json:"files"`               // files committed
	Bytes     int64           `json:"bytes"`               // their size
	Deleted   int             `json:"deleted"`             // retired files deleted
	Took      float64         `json:"took_seconds"`
}

// writeLine writes v as one JSON line.
func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// errLineTooLong is returned for a protocol line over maxApplyLine.
var errLineTooLong = errors.New("protocol line too long")

// readLine reads one line (without the newline) of at most maxApplyLine
// bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxApplyLine {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, fmt.Errorf("%w (line cut short: %q)", io.ErrUnexpectedEOF, clip(line))
		default:
			return nil, err
		}
	}
}

// decodeLine decodes one protocol message, refusing unknown fields and other
// formats.
func decodeLine(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a %s message (%v): %q", ApplyFormat, err, clip(line))
	}
	return nil
}

// clip shortens b for an error message.
func clip(b []byte) string {
	const n = 120
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
