// Package apply is the difusor's side of package mode: "prepcast apply",
// run by the publisher over SSH, brings the difusor's webroot to the cut of
// the package on its standard input, or leaves it serving its previous cut.
//
// Everything that decides the outcome derives from signed data. The
// difusor keeps the signed manifest of the cut it holds (under HeldDir) and
// computes the rest itself from that manifest and the package's: which
// files the package must bring and with which hashes, which files may be
// retired, and which cut numbers it refuses as a rollback. The request only
// says how many bytes follow; the package's delta description is ignored.
// Every line and member read is bounded (see [Options.MaxManifest]).
package apply

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/applyproto"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
)

// DefaultRetention is how long files that left the cut stay in the root
// for readers of the previous cut, unless the difusor sets another.
const DefaultRetention = 30 * time.Minute

// MinRetention is the least retention a difusor may set: a page loaded
// just before the pointer switched must still find its files.
const MinRetention = time.Minute

// Options configures [Apply].
type Options struct {
	// Target is the difusor's webroot on the local machine (targets/localfs).
	Target targets.Target
	// PublicKey is the institute's key cuts must be signed with
	// (--public-key).
	PublicKey ed25519.PublicKey
	// TrustOnFirstUse, without PublicKey, trusts the key the publisher
	// names until one is pinned at PinnedKeyPath, which happens only once
	// a whole package signed with it verified; later packages must be
	// signed with the pinned key. With neither, every package is refused.
	TrustOnFirstUse bool
	// Retention is how long files that left the cut stay (default
	// DefaultRetention, at least MinRetention): the difusor's own
	// setting, never the publisher's.
	Retention time.Duration
	// MaxManifest bounds the manifest a package may carry (default
	// DefaultMaxManifest).
	MaxManifest int64
	In          io.Reader // the publisher's request and package
	Out         io.Writer // the greeting and the outcome
	Version     string
	Log         *zap.Logger
	Now         func() time.Time // the difusor's clock; default time.Now
}

// ErrRefused is wrapped by the error [Apply] returns when the package was
// not applied; the root still serves its previous cut.
var ErrRefused = errors.New("package not applied")

// ErrNoKey is wrapped by the error [Apply] returns when it trusts no key
// (neither PublicKey nor TrustOnFirstUse): a configuration to fix.
var ErrNoKey = errors.New("no institute key configured")

// Apply greets the publisher with the cut the root holds and vouches for,
// reads one request and package, and brings the root to the package's cut
// exactly as an SFTP push does: every file is checked against the signed
// manifest while it is written to the staging directory, every file of the
// cut is then either staged or vouched for by the kept signed manifest,
// the staged files are made durable and renamed into place with the
// pointer files last, the signed manifest is kept, and the ack is written.
// A package that fails any check (signature, key, a member the manifest
// does not list or of another size or SHA-256, a missing file, an older
// cut, a stream cut short or too long) commits nothing: the root keeps
// serving its cut.
//
// The caller must make sure only one Apply runs on a root at a time
// ([LockRoot]). The outcome is printed to Out and also returned: nil only
// when the root holds the package's cut.
func Apply(ctx context.Context, o Options) error {
	start := time.Now()
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Retention < MinRetention {
		return fmt.Errorf("apply: retention %v is shorter than %v: readers of the previous cut must find its files", o.Retention, MinRetention)
	}
	if o.MaxManifest <= 0 {
		o.MaxManifest = DefaultMaxManifest
	}
	log := o.Log
	mode := o.trustMode()
	trusted, err := o.trustedKey(ctx)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	h, err := loadHeld(ctx, o.Target, trusted, o.MaxManifest, log)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	hello := applyproto.Hello{Format: applyproto.Format, Version: o.Version, Trust: mode, Proof: true,
		Deltas: []string{packager.DeltaZstd}}
	if h.vouched {
		hello.AckSeq, hello.AckManifest = h.m.Seq, h.state.Manifest
	} else {
		log.Info("vouching for no cut: the package must bring every file", zap.String("why", termsafe.String(h.why)))
	}
	if err := applyproto.WriteLine(o.Out, hello); err != nil {
		return fmt.Errorf("apply: greet: %w", err)
	}
	in := bufio.NewReaderSize(o.In, 64<<10)
	line, err := applyproto.ReadLine(in, applyproto.MaxRequestLine)
	if err != nil {
		return fmt.Errorf("apply: read request: %w", err)
	}
	var req applyproto.Request
	if err := applyproto.DecodeLine(line, &req); err != nil {
		return fmt.Errorf("apply: read request: %w", err)
	}
	if req.Format != applyproto.Format {
		return fmt.Errorf("apply: request format %s, this prepcast speaks %s: use the same prepcast version on both sides", quote(req.Format), applyproto.Format)
	}
	run := &applyRun{o: &o, h: h, req: &req, trusted: trusted, mode: mode, log: log,
		d: publisher.NewDifusor(o.Target, req.FilesInFlight, o.Retention, log)}
	res := run.apply(ctx, in)
	res.Format, res.Trust, res.Took = applyproto.Format, mode, time.Since(start).Seconds()
	if res.Code != applyproto.OK {
		log.Error("package not applied", zap.String("code", res.Code), zap.String("error", termsafe.String(res.Error)),
			zap.String("publisher", termsafe.String(req.Publisher)))
	} else {
		log.Info("package applied", zap.Int64("seq", req.ToSeq), zap.Int("files", res.Files), zap.Int64("bytes", res.Bytes),
			zap.Int("deleted", res.Deleted), zap.String("publisher", termsafe.String(req.Publisher)), zap.Duration("took", time.Since(start)))
	}
	if err := applyproto.WriteLine(o.Out, res); err != nil {
		return fmt.Errorf("apply: report: %w", err)
	}
	// Whatever the publisher still sends after a refusal is read and
	// dropped, so that it sees the outcome rather than a broken pipe.
	_, _ = io.Copy(io.Discard, in)
	if res.Code == applyproto.Untrusted {
		return fmt.Errorf("apply: %w (%s): %s", ErrNoKey, res.Code, res.Error)
	}
	if res.Code != applyproto.OK {
		return fmt.Errorf("apply: %w (%s): %s", ErrRefused, res.Code, res.Error)
	}
	return nil
}

// applyRun is one request being carried out.
type applyRun struct {
	o       *Options
	h       *held
	req     *applyproto.Request
	trusted ed25519.PublicKey
	mode    string
	log     *zap.Logger
	d       *publisher.Difusor
}

func refuse(code string, permanent bool, err error) applyproto.Result {
	return applyproto.Result{Code: code, Error: err.Error(), Permanent: permanent}
}

// apply carries out the request and describes the outcome.
func (r *applyRun) apply(ctx context.Context, in io.Reader) applyproto.Result {
	req, h := r.req, r.h
	key, pinAfter, err := verifyKey(r.trusted, r.mode, req.PublicKey)
	if err != nil {
		if r.mode == applyproto.TrustNone {
			return refuse(applyproto.Untrusted, true, err)
		}
		return refuse(applyproto.KeyMismatch, true, err)
	}
	if req.PackageSize <= 0 {
		return refuse(applyproto.BadPackage, true, errors.New("the request carries no package"))
	}
	// A retry whose outcome was lost: the difusor already holds the cut.
	if h.vouched && req.ToSeq == h.m.Seq && req.ToManifest == h.state.Manifest {
		a := r.ackFor(h.m, h.state, h.sig)
		if err := r.d.WriteAck(ctx, a); err != nil {
			return refuse(applyproto.Failed, targets.IsPermanent(err), err)
		}
		return applyproto.Result{Code: applyproto.OK, Ack: a.Encode()}
	}
	if h.refuses(req.ToSeq, req.ToManifest) {
		return refuse(applyproto.Rollback, true, r.rollbackError(req.ToSeq))
	}
	if err := r.d.PrepareStaging(ctx); err != nil {
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}

	body := &io.LimitedReader{R: in, N: req.PackageSize}
	var plan []publisher.Staged
	staged := map[string]bool{}
	var keyErr, rollErr error
	verify := func(mb, sig []byte) (*packager.Manifest, error) {
		if err := packager.Verify(key, mb, sig); err != nil {
			keyErr = err
			return nil, err
		}
		m, err := packager.ParseManifest(mb)
		if err != nil {
			return nil, fmt.Errorf("%w: signed manifest: %w", ErrBadPackage, err)
		}
		if h.refuses(m.Seq, packager.Hash(mb)) {
			rollErr = r.rollbackError(m.Seq)
			return nil, rollErr
		}
		if m.Seq != req.ToSeq || packager.Hash(mb) != req.ToManifest {
			return nil, fmt.Errorf("%w: the package brings cut %d (manifest %.12s), the request announced cut %d (manifest %.12s)",
				ErrBadPackage, m.Seq, packager.Hash(mb), req.ToSeq, quote(req.ToManifest))
		}
		return m, nil
	}
	file := func(e packager.Entry, rd io.Reader) error {
		s, err := r.d.Stage(ctx, e, rd)
		if err != nil {
			return err
		}
		plan = append(plan, s)
		staged[e.Path] = true
		return nil
	}
	m, mb, sig, err := readPackage(body, r.o.MaxManifest, verify, r.deltaBase(ctx), file)
	switch {
	case err == nil:
	case errors.Is(err, ErrBaseDamaged):
		return refuse(applyproto.BaseDamaged, false, err)
	case keyErr != nil:
		msg := fmt.Errorf("%w (the difusor trusts another institute key)", keyErr)
		if pinAfter {
			msg = fmt.Errorf("%w; nothing was pinned", keyErr)
		}
		return refuse(applyproto.KeyMismatch, true, msg)
	case rollErr != nil:
		return refuse(applyproto.Rollback, true, rollErr)
	case errors.Is(err, ErrBadPackage):
		return refuse(applyproto.BadPackage, false, err)
	default:
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}
	// The package must end exactly where the request said.
	if rest, _ := io.Copy(io.Discard, body); rest != 0 || body.N != 0 {
		return refuse(applyproto.BadPackage, false, fmt.Errorf("%w: %d bytes arrived, the request announced %d", ErrBadPackage, req.PackageSize-body.N, req.PackageSize))
	}

	// Every file of the cut must now be staged, or be in the root as the
	// kept signed manifest vouches for it.
	var prev *packager.Manifest
	if h.vouched {
		prev = h.m
	}
	missing, err := r.missing(ctx, m, prev, staged)
	if err != nil {
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}
	if missing != "" {
		why := "the package does not bring it"
		if prev == nil {
			why += " and the difusor keeps no signed manifest of its cut, so the package must bring every file"
		} else {
			why += " and the root does not hold it as cut " + fmt.Sprint(prev.Seq) + " did"
		}
		return refuse(applyproto.Incomplete, false, fmt.Errorf("file %s of cut %d is missing: %s; nothing was committed", quote(missing), m.Seq, why))
	}
	if pinAfter {
		if err := pin(ctx, r.o.Target, key); err != nil {
			return refuse(applyproto.Failed, targets.IsPermanent(err), err)
		}
		r.log.Warn("institute key pinned on first use, after a whole package verified", zap.String("path", PinnedKeyPath))
	}

	// Everything arrived and checked out: the cut's public proof, then
	// the switch of the root to the cut.
	var served int64
	if h.vouched {
		served = h.m.Seq
	}
	if err := r.d.PublishProof(ctx, m, mb, sig, served); err != nil {
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}
	if err := r.d.Commit(ctx, plan, m); err != nil {
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}
	now := r.o.Now().UTC().Truncate(time.Second)
	keep, due := r.retire(m, now)
	st := &heldState{Format: HeldFormat, Seq: m.Seq, ID: m.ID, Manifest: packager.Hash(mb), Time: r.o.Now().UTC().Truncate(time.Millisecond),
		Publisher: termsafe.Clip(req.Publisher, 200), Retired: sortRetired(append(append([]publisher.Retired(nil), keep...), due...))}
	if err := saveHeld(ctx, r.o.Target, st, mb, sig); err != nil {
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}
	a := r.ackFor(m, st, sig)
	if err := r.d.WriteAck(ctx, a); err != nil {
		return refuse(applyproto.Failed, targets.IsPermanent(err), err)
	}
	res := applyproto.Result{Code: applyproto.OK, Ack: a.Encode(), Files: len(plan)}
	for _, s := range plan {
		res.Bytes += s.Entry().Size
	}
	if err := r.d.DeleteRetired(ctx, due, keep, m); err != nil {
		r.log.Warn("delete retired files (tried again at the next apply)", zap.Error(err))
	} else if len(due) > 0 {
		res.Deleted = len(due)
		st.Retired = keep
		if err := saveHeld(ctx, r.o.Target, st, nil, nil); err != nil {
			r.log.Warn("record deleted files (deleted again at the next apply)", zap.Error(err))
		}
	}
	dropOldHeld(ctx, r.o.Target, st.Manifest, r.log)
	r.d.CleanStaging(ctx)
	return res
}

// missing returns the first file of m that is neither staged nor vouched
// for: in the root with the content prev (the kept signed manifest; nil
// when there is none) lists for it.
func (r *applyRun) missing(ctx context.Context, m, prev *packager.Manifest, staged map[string]bool) (string, error) {
	if prev == nil {
		for _, e := range m.Entries {
			if !staged[e.Path] {
				return e.Path, nil
			}
		}
		return "", nil
	}
	return missingFiles(ctx, r.o.Target, m, prev, staged)
}

// retire returns the files to keep for readers of the previous cut and the
// files due for deletion: those of the kept signed manifest that m no
// longer lists, and those retired earlier, once the difusor's retention
// has passed. Files retired now are always kept.
func (r *applyRun) retire(m *packager.Manifest, now time.Time) (keep, due []publisher.Retired) {
	h := r.h
	if h.m == nil {
		return nil, nil // no signed manifest of the previous cut: nothing is deleted
	}
	seen := map[string]bool{}
	for _, x := range h.state.Retired {
		if _, back := m.Lookup(x.Path); back || seen[x.Path] || checkDeletable(x.Path) != nil {
			continue
		}
		seen[x.Path] = true
		if !x.Since.After(now) && now.Sub(x.Since) >= r.o.Retention {
			due = append(due, x)
		} else {
			keep = append(keep, x)
		}
	}
	for _, e := range h.m.Entries {
		if _, still := m.Lookup(e.Path); !still && !seen[e.Path] {
			seen[e.Path] = true
			keep = append(keep, publisher.Retired{Path: e.Path, Since: now})
		}
	}
	return sortRetired(keep), sortRetired(due)
}

func (r *applyRun) ackFor(m *packager.Manifest, st *heldState, sig []byte) *publisher.Ack {
	return &publisher.Ack{Format: publisher.AckFormat, Seq: m.Seq, ID: m.ID, Manifest: st.Manifest,
		Signature: packager.SignatureBase64(sig), Time: st.Time, Publisher: st.Publisher, Retired: st.Retired}
}

func (r *applyRun) rollbackError(seq int64) error {
	held := fmt.Sprintf("cut %d", r.h.floor)
	if r.h.state != nil {
		held = fmt.Sprintf("cut %d (%s, manifest %.12s)", r.h.state.Seq, quote(r.h.state.ID), r.h.state.Manifest)
	}
	return fmt.Errorf("%w: the difusor has applied %s, the package brings cut %d; prepcast never takes a difusor back to an older cut, nor to another cut of the same number",
		publisher.ErrRollback, held, seq)
}

func sortRetired(rs []publisher.Retired) []publisher.Retired {
	slices.SortFunc(rs, func(a, b publisher.Retired) int { return strings.Compare(a.Path, b.Path) })
	return rs
}

// ErrBaseDamaged is wrapped by the error of a package refused because a
// file one of its deltas starts from is not in the root as the signed
// manifest of the cut the difusor holds lists it: the root was changed
// outside prepcast. The publisher then sends whole files.
var ErrBaseDamaged = errors.New("a file in the root does not match the signed cut it belongs to")

// deltaBase returns the content delta members start from: the file the
// root serves at their path, when the kept signed manifest lists it with
// the SHA-256 the member names, read and checked against that hash.
func (r *applyRun) deltaBase(ctx context.Context) baseFunc {
	return func(p, sha string) ([]byte, error) {
		h := r.h
		if !h.vouched {
			return nil, fmt.Errorf("%w: member %s is a delta, and the difusor vouches for no cut to decode it against", ErrBadPackage, quote(p))
		}
		pe, ok := h.m.Lookup(p)
		if !ok || pe.SHA256 != sha {
			return nil, fmt.Errorf("%w: member %s is a delta from content (SHA-256 %.12s) that cut %d does not hold at that path",
				ErrBadPackage, quote(p), sha, h.m.Seq)
		}
		if pe.Size > packager.MaxDeltaBase {
			return nil, fmt.Errorf("%w: member %s is a delta from a file of %d bytes, more than the %d a delta may start from",
				ErrBadPackage, quote(p), pe.Size, packager.MaxDeltaBase)
		}
		b, err := targets.ReadFileMax(ctx, r.o.Target, p, pe.Size)
		if err == nil && (int64(len(b)) != pe.Size || packager.Hash(b) != pe.SHA256) {
			err = fmt.Errorf("its content is not the SHA-256 %.12s cut %d lists", pe.SHA256, h.m.Seq)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s; nothing was committed, and the publisher sends whole files",
				ErrBaseDamaged, quote(p), termsafe.String(err.Error()))
		}
		return b, nil
	}
}
