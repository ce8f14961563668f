package apply

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
)

// HeldDir is where "prepcast apply" keeps the signed manifest (and its
// signature) of the cut the root holds, and its own record (HeldState):
// what it computes every delta, every deletion and its rollback protection
// from. Serve nothing under ROOT/.prepcast/.
const HeldDir = safepath.Reserved + "/held"

// HeldStatePath is the difusor's record of the cut it holds.
const HeldStatePath = HeldDir + "/state.json"

// HeldFormat tags HeldStatePath.
const HeldFormat = "prepcast-held/1"

// maxHeldState bounds the record (its retired list names at most the
// files of a few cuts).
const maxHeldState = 16 << 20

// heldState is the difusor's own record of the cut it holds, written after
// the cut's files are in place and before the ack.
type heldState struct {
	Format    string    `json:"format"`
	Seq       int64     `json:"seq"` // the highest cut ever applied here: anything not newer is refused
	ID        string    `json:"id"`
	Manifest  string    `json:"manifest_sha256"` // names the kept manifest: HeldDir/<sha>.json and .sig
	Time      time.Time `json:"time"`            // when the pointer switched (this difusor's clock)
	Publisher string    `json:"publisher,omitempty"`
	// Retired lists files that left the signed manifest, as computed from
	// two signed manifests, and when (this difusor's clock); they are
	// deleted once the difusor's retention has passed.
	Retired []publisher.Retired `json:"retired,omitempty"`
}

func heldManifestPath(sha string) string  { return HeldDir + "/" + sha + ".json" }
func heldSignaturePath(sha string) string { return HeldDir + "/" + sha + ".sig" }

// held is what the difusor knows, from signed data, of the cut it holds.
type held struct {
	state *heldState         // nil: no record, or unreadable
	m     *packager.Manifest // the kept manifest, verified with the trusted key; nil if none
	sig   []byte             // its signature file
	// vouched: m is verified and every file of m is in the root with its
	// size, so a delta from m completes the next cut.
	vouched bool
	// floor is the highest cut number applied here, by the record, the
	// kept manifest or the ack: nothing older is ever applied, and a cut
	// of the same number only with floorSHA as its manifest.
	floor    int64
	floorSHA string
	// why says why the difusor cannot vouch for a cut, for the log.
	why string
}

// loadHeld reads the difusor's record and kept manifest, verifies the
// manifest with key (nil: no key trusted yet, so nothing kept is trusted)
// and checks that the root holds its files. Whatever is missing or does
// not verify makes the difusor vouch for no cut: the next package must
// then bring every file, and nothing is deleted.
func loadHeld(ctx context.Context, t targets.Target, key ed25519.PublicKey, maxManifest int64, log *zap.Logger) (*held, error) {
	h := &held{}
	ack := readAck(ctx, t, log)
	if ack != nil {
		h.raise(ack.Seq, ack.Manifest)
	}
	data, err := readSmall(ctx, t, HeldStatePath, maxHeldState)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		h.why = "no signed manifest kept (first apply, or a root an older prepcast wrote)"
		return h, nil
	}
	var st *heldState
	if err == nil {
		st, err = parseHeldState(data)
	}
	if err != nil {
		log.Warn("difusor's record unreadable; the next package must bring the whole cut", zap.String("path", HeldStatePath), zap.String("error", termsafe.String(err.Error())))
		h.why = "record unreadable: " + err.Error()
		return h, nil
	}
	h.state = st
	h.raise(st.Seq, st.Manifest)
	if key == nil {
		h.why = "no institute key trusted yet"
		return h, nil
	}
	mb, err := readSmall(ctx, t, heldManifestPath(st.Manifest), maxManifest)
	var sig []byte
	if err == nil {
		sig, err = readSmall(ctx, t, heldSignaturePath(st.Manifest), maxSignature)
	}
	if err == nil && packager.Hash(mb) != st.Manifest {
		err = errors.New("content does not match its name")
	}
	if err == nil {
		err = packager.Verify(key, mb, sig)
	}
	var m *packager.Manifest
	if err == nil {
		m, err = packager.ParseManifest(mb)
	}
	if err != nil {
		h.why = "kept manifest unusable: " + err.Error()
		log.Warn("kept signed manifest unusable; the next package must bring the whole cut", zap.String("manifest", st.Manifest), zap.String("error", termsafe.String(err.Error())))
		return h, nil
	}
	h.m, h.sig = m, sig
	h.raise(m.Seq, st.Manifest)
	if ack != nil && (ack.Seq != st.Seq || ack.Manifest != st.Manifest) {
		// Something else (a push over SFTP) wrote the root since.
		h.why = fmt.Sprintf("the ack names cut %d, the kept signed manifest cut %d: the root was written by other means", ack.Seq, st.Seq)
		log.Warn("the ack and the kept signed manifest disagree; the next package must bring the whole cut", zap.Int64("ack_seq", ack.Seq), zap.Int64("kept_seq", st.Seq))
		return h, nil
	}
	missing, err := missingFiles(ctx, t, m, nil, nil)
	if err != nil {
		return nil, err
	}
	if missing != "" {
		h.why = fmt.Sprintf("file %s of cut %d is missing or has another size", quote(missing), m.Seq)
		log.Warn("the root lacks a file of the cut it holds; the next package must bring the whole cut", zap.String("path", termsafe.String(missing)))
		return h, nil
	}
	h.vouched = true
	return h, nil
}

// raise makes cut seq with manifest sha the floor if it is newer; the
// signed record wins a tie.
func (h *held) raise(seq int64, sha string) {
	if seq >= h.floor {
		h.floor, h.floorSHA = seq, sha
	}
}

// refuses reports whether cut seq with manifest sha would take the root
// back (an older cut, or another cut of the same number).
func (h *held) refuses(seq int64, sha string) bool {
	return seq < h.floor || (seq == h.floor && sha != h.floorSHA)
}

func parseHeldState(data []byte) (*heldState, error) {
	if len(data) > maxHeldState {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), maxHeldState)
	}
	var st heldState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, err
	}
	switch {
	case st.Format != HeldFormat:
		return nil, fmt.Errorf("format %q, want %q", st.Format, HeldFormat)
	case st.Seq < 1 || !packager.IsSHA256Hex(st.Manifest):
		return nil, errors.New("no cut named")
	}
	for _, r := range st.Retired {
		if err := checkDeletable(r.Path); err != nil {
			return nil, fmt.Errorf("retired: %w", err)
		}
	}
	return &st, nil
}

// checkDeletable refuses a path apply must never delete.
func checkDeletable(p string) error {
	if err := safepath.Check(p); err != nil {
		return err
	}
	if p == safepath.Reserved || strings.HasPrefix(p, safepath.Reserved+"/") {
		return fmt.Errorf("%s is prepcast's own directory", p)
	}
	return nil
}

// maxAck bounds the ack apply reads (it matters only for a root an older
// prepcast wrote; the record and the kept manifest are what apply trusts).
const maxAck = 4 << 20

// readSmall reads the regular file p of at most max bytes, checking its
// size before reading it: a file planted larger, or a symbolic link, is an
// error, never read into memory.
func readSmall(ctx context.Context, t targets.Target, p string, max int64) ([]byte, error) {
	size, link := int64(-1), false
	err := t.Walk(ctx, p, func(fi targets.FileInfo) error {
		if fi.Path == p {
			size, link = fi.Size, fi.Symlink
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case link:
		return nil, fmt.Errorf("%s is a symbolic link", p)
	case size < 0:
		return nil, fmt.Errorf("%s is not a regular file", p)
	case size > max:
		return nil, fmt.Errorf("%s has %d bytes, more than the %d expected", p, size, max)
	}
	data, err := t.ReadFile(ctx, p)
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%s has %d bytes, more than the %d expected", p, len(data), max)
	}
	return data, err
}

// readAck returns the root's ack, nil when it has none or it is unreadable.
func readAck(ctx context.Context, t targets.Target, log *zap.Logger) *publisher.Ack {
	data, err := readSmall(ctx, t, publisher.AckPath, maxAck)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("read ack", zap.String("error", termsafe.String(err.Error())))
		}
		return nil
	}
	a, err := publisher.ParseAck(data)
	if err != nil {
		log.Warn("ack unreadable", zap.String("error", termsafe.String(err.Error())))
		return nil
	}
	return a
}

// missingFiles lists the root and returns the first file of m (in path
// order) that is neither staged nor in the root as a regular file of its
// size, or that the kept manifest prev (when not nil) does not vouch for
// with the same content; "" when there is none.
func missingFiles(ctx context.Context, t targets.Target, m, prev *packager.Manifest, staged map[string]bool) (string, error) {
	have := make(map[string]int64, len(m.Entries))
	err := t.Walk(ctx, "", func(fi targets.FileInfo) error {
		if fi.Symlink {
			return nil
		}
		if _, ok := m.Lookup(fi.Path); ok {
			have[fi.Path] = fi.Size
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list the root: %w", err)
	}
	for _, e := range m.Entries {
		if staged[e.Path] {
			continue
		}
		if sz, ok := have[e.Path]; !ok || sz != e.Size {
			return e.Path, nil
		}
		if prev != nil {
			if pe, ok := prev.Lookup(e.Path); !ok || pe != e {
				return e.Path, nil
			}
		}
	}
	return "", nil
}

// saveHeld keeps the signed manifest and signature of the cut just
// committed and the record naming them: the record is renamed into place
// last, so it never names a manifest that is not whole.
func saveHeld(ctx context.Context, t targets.Target, st *heldState, mb, sig []byte) error {
	if err := t.MkdirAll(ctx, HeldDir); err != nil {
		return fmt.Errorf("keep signed manifest: %w", err)
	}
	if mb != nil {
		if err := writeAtomic(ctx, t, heldManifestPath(st.Manifest), mb); err != nil {
			return fmt.Errorf("keep signed manifest: %w", err)
		}
		if err := writeAtomic(ctx, t, heldSignaturePath(st.Manifest), sig); err != nil {
			return fmt.Errorf("keep signed manifest: %w", err)
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(ctx, t, HeldStatePath, append(data, '\n')); err != nil {
		return fmt.Errorf("record the cut held: %w", err)
	}
	return nil
}

// dropOldHeld removes kept manifests other than the one named sha.
func dropOldHeld(ctx context.Context, t targets.Target, sha string, log *zap.Logger) {
	var old []string
	_ = t.Walk(ctx, HeldDir, func(fi targets.FileInfo) error {
		if fi.Path != HeldStatePath && fi.Path != heldManifestPath(sha) && fi.Path != heldSignaturePath(sha) {
			old = append(old, fi.Path)
		}
		return nil
	})
	for _, p := range old {
		if err := t.Remove(ctx, p); err != nil {
			log.Debug("remove old kept manifest", zap.String("path", p), zap.Error(err))
		}
	}
}

// writeAtomic writes data to a staging name, flushed, and renames it to p.
func writeAtomic(ctx context.Context, t targets.Target, p string, data []byte) error {
	if err := t.MkdirAll(ctx, publisher.StagingDir); err != nil {
		return err
	}
	tmp := publisher.StagingDir + "/" + strings.ReplaceAll(strings.TrimPrefix(p, safepath.Reserved+"/"), "/", "-") + ".tmp"
	if err := t.WriteFile(ctx, tmp, bytes.NewReader(data), int64(len(data))); err != nil {
		return err
	}
	return t.Rename(ctx, tmp, p)
}
