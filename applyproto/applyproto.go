// Package applyproto is the wire protocol of package mode, spoken between
// "prepcast push" (the publisher, package publisher) and "prepcast apply"
// (the difusor, package apply) over an SSH command's standard streams.
//
// Messages are JSON objects, one per line:
//
//  1. apply → push: a greeting ([Hello]) with the cut the difusor holds and
//     can vouch for (its signed manifest is kept in the root), and how it
//     trusts the institute's key;
//  2. push → apply: a request ([Request]), then exactly PackageSize bytes of
//     package;
//  3. apply → push: the outcome ([Result]), after the pointer switched and
//     the ack was written, or after nothing changed.
//
// Nothing in a request decides what the difusor deletes, when, or which
// files its cut must hold: those follow from the signed manifests alone.
// Every line either side reads is bounded ([ReadLine]).
package applyproto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/prepcast/prepcast/internal/termsafe"
)

// Format tags every message. Version 2 dropped the publisher's clock and
// retention window from the request and added the difusor's key trust to
// the greeting; a peer speaking another version is refused with a message
// that asks for the same prepcast on both ends.
const Format = "prepcast-apply/2"

// MaxLine bounds one protocol line read by either end: the greeting and the
// request are a few hundred bytes; an outcome carries an ack, whose retired
// list may name a few thousand paths.
const MaxLine = 1 << 20

// MaxRequestLine bounds the request line "prepcast apply" reads.
const MaxRequestLine = 64 << 10

// Key trust modes a difusor reports in its greeting.
const (
	TrustPublicKey  = "public-key"         // apply --public-key: the key is fixed
	TrustOnFirstUse = "trust-on-first-use" // apply --trust-on-first-use: pinned after the first verified package
	TrustNone       = "none"               // no key configured: every package is refused
)

// Hello is the first line "prepcast apply" prints.
type Hello struct {
	Format  string `json:"format"`
	Version string `json:"version"`
	// AckSeq and AckManifest name the cut the difusor holds and vouches
	// for: its signed manifest is kept in the root and every file of it is
	// present. 0 and "" when it cannot vouch for any cut (first apply, a
	// root written by an older prepcast, files missing): the publisher then
	// sends the whole cut.
	AckSeq      int64  `json:"ack_seq"`
	AckManifest string `json:"ack_manifest"`
	Trust       string `json:"trust"` // one of the Trust constants
	// Proof is true when the difusor publishes the public proof of every
	// cut it commits itself, from the signed manifest it verified, before
	// the commit (see packager.ProofDir); the publisher then leaves it
	// alone in this exchange. An older apply leaves it false, and the
	// publisher publishes the proof over SFTP before the package goes.
	Proof bool `json:"proof,omitempty"`
	// Deltas lists the encodings of delta members the difusor decodes
	// against the files of the cut it vouches for (packager.DeltaZstd);
	// the publisher sends whole files to an apply that lists none.
	Deltas []string `json:"deltas,omitempty"`
}

// Request follows the greeting.
type Request struct {
	Format        string `json:"format"`
	Publisher     string `json:"publisher"`       // host name, written into the ack
	PublicKey     string `json:"public_key"`      // base64 ed25519 key the cut is signed with
	PackageSize   int64  `json:"package_size"`    // bytes of package that follow the line
	FromSeq       int64  `json:"from_seq"`        // the cut the package starts from (0 = nothing)
	ToSeq         int64  `json:"to_seq"`          // the cut it brings
	ToManifest    string `json:"to_manifest"`     // hex SHA-256 of that cut's manifest
	FilesInFlight int    `json:"files_in_flight"` // renames at once on the difusor (0 = default)
}

// Result codes.
const (
	OK          = "ok"
	BaseChanged = "base-changed" // the difusor's cut is not the package's origin
	Rollback    = "rollback"     // the difusor holds a newer or different cut
	BadPackage  = "bad-package"  // the package failed a check; nothing was committed
	KeyMismatch = "key-mismatch" // the cut is signed with a key the difusor does not trust
	Untrusted   = "no-key"       // the difusor trusts no key yet: apply needs --public-key or --trust-on-first-use
	Incomplete  = "incomplete"   // the package and the root together lack a file of the cut; nothing was committed
	BaseDamaged = "base-damaged" // a file a delta starts from is not in the root as the signed cut it holds lists it; nothing was committed
	Failed      = "failed"       // anything else (I/O, full disk, ...)
)

// Result is the last line "prepcast apply" prints.
type Result struct {
	Format    string          `json:"format"`
	Code      string          `json:"code"`
	Error     string          `json:"error,omitempty"`
	Permanent bool            `json:"permanent,omitempty"` // no retry can fix it
	Ack       json.RawMessage `json:"ack,omitempty"`       // the ack written (code ok)
	Files     int             `json:"files"`               // files committed
	Bytes     int64           `json:"bytes"`               // their size
	Deleted   int             `json:"deleted"`             // retired files deleted
	Trust     string          `json:"trust,omitempty"`     // as in Hello
	Took      float64         `json:"took_seconds"`
}

// WriteLine writes v as one JSON line.
func WriteLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ErrLineTooLong is returned for a protocol line over the bound.
var ErrLineTooLong = errors.New("protocol line too long")

// ReadLine reads one line (without the newline) of at most max bytes; it
// never holds more than max bytes plus r's buffer, whatever r yields.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w (more than %d bytes)", ErrLineTooLong, max)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, fmt.Errorf("%w (line cut short: %s)", io.ErrUnexpectedEOF, Clip(line))
		default:
			return nil, err
		}
	}
}

// DecodeLine decodes one protocol message, refusing unknown fields and data
// after the object.
func DecodeLine(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a %s message (%s): %s", Format, termsafe.String(err.Error()), Clip(line))
	}
	if dec.More() {
		return fmt.Errorf("not a %s message (data after the object): %s", Format, Clip(line))
	}
	return nil
}

// Clip returns b shortened and escaped for an error message or a log line:
// it came from the other end.
func Clip(b []byte) string {
	return `"` + termsafe.Clip(string(b), 120) + `"`
}
