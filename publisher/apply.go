package publisher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// TrustedKeyPath is where "prepcast apply" pins the publisher's public key
// the first time it applies a package, when it was not given one.
const TrustedKeyPath = safepath.Reserved + "/publisher.pub"

// ApplyOptions configures [Apply].
type ApplyOptions struct {
	// Target is the difusor's webroot on the local machine (targets/localfs).
	Target targets.Target
	// PublicKey is the key cuts must be signed with. When nil, the key the
	// publisher names is trusted on first use and pinned at
	// TrustedKeyPath; a later package signed with another key is refused.
	PublicKey ed25519.PublicKey
	In        io.Reader // the publisher's request and package
	Out       io.Writer // the greeting and the outcome
	Version   string
	Log       *zap.Logger
}

// Apply is the difusor's side of package mode ("prepcast apply"). It greets
// the publisher with the cut the root holds, reads one package, and brings
// the root to the package's cut exactly as an SFTP push does: every file is
// checked against the signed manifest while it is written to the staging
// directory, the staged files are made durable, renamed into place with the
// pointer files last, and the ack is written. A package that fails any
// check (signature, origin, a file's size or SHA-256, a short stream)
// commits nothing: the root keeps serving its cut.
//
// The caller must make sure only one Apply runs on a root at a time. The
// outcome is printed to Out and also returned: nil only when the root holds
// the package's cut.
func Apply(ctx context.Context, o ApplyOptions) error {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{Log: log}
	e.init()
	r := &targetRun{e: e, t: o.Target, log: log, staged: map[string]bool{}, synced: map[string]bool{}, dirs: map[string]bool{},
		prog: func(string, int64, int64, int, int) {}, start: start}

	ack, err := r.readAck(ctx)
	if err != nil {
		return err
	}
	hello := applyHello{Format: ApplyFormat, Version: o.Version}
	if ack != nil {
		hello.AckSeq, hello.AckManifest = ack.Seq, ack.Manifest
	}
	if err := writeLine(o.Out, hello); err != nil {
		return fmt.Errorf("apply: greet: %w", err)
	}
	in := bufio.NewReaderSize(o.In, 256<<10)
	line, err := readLine(in)
	if err != nil {
		return fmt.Errorf("apply: read request: %w", err)
	}
	var req applyRequest
	if err := decodeLine(line, &req); err != nil {
		return fmt.Errorf("apply: read request: %w", err)
	}
	if req.Format != ApplyFormat {
		return fmt.Errorf("apply: request format %q, this prepcast speaks %s: use the same prepcast version on both sides", req.Format, ApplyFormat)
	}
	res := r.applyRequest(ctx, &req, ack, in, o.PublicKey)
	res.Format, res.Took = ApplyFormat, time.Since(start).Seconds()
	if res.Code != applyOK {
		log.Error("package not applied", zap.String("code", res.Code), zap.String("error", res.Error))
	} else {
		log.Info("package applied", zap.Int64("seq", req.ToSeq), zap.Int("files", res.Files), zap.Int64("bytes", res.Bytes),
			zap.Int("deleted", res.Deleted), zap.Duration("took", time.Since(start)))
	}
	if err := writeLine(o.Out, res); err != nil {
		return fmt.Errorf("apply: report: %w", err)
	}
	// Whatever the publisher still sends after a failure is read and
	// dropped, so that it sees the outcome rather than a broken pipe.
	_, _ = io.Copy(io.Discard, in)
	if res.Code != applyOK {
		return fmt.Errorf("apply: %s: %s", res.Code, res.Error)
	}
	return nil
}

// applyRequest carries out one request and describes the outcome.
func (r *targetRun) applyRequest(ctx context.Context, req *applyRequest, ack *Ack, in io.Reader, trusted ed25519.PublicKey) applyResult {
	fail := func(code string, permanent bool, err error) applyResult {
		return applyResult{Code: code, Error: err.Error(), Permanent: permanent}
	}
	r.e.Publisher = req.Publisher
	if w := time.Duration(req.RetentionWindow); w > 0 {
		r.e.RetentionWindow = w
	}
	if req.FilesInFlight > 0 {
		r.e.FilesInFlight = min(req.FilesInFlight, 256)
	}
	// The publisher's clock governs acks and retention, as in an SFTP push.
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	received := time.Now()
	r.e.Now = func() time.Time { return now.Add(time.Since(received)) }

	if req.PackageSize <= 0 {
		return fail(applyBadPackage, true, errors.New("the request carries no package"))
	}
	body := &io.LimitedReader{R: in, N: req.PackageSize}
	if err := r.prepareStaging(ctx); err != nil {
		return fail(applyFailed, targets.IsPermanent(err), err)
	}
	pub, err := r.trustKey(ctx, req.PublicKey, trusted)
	if err != nil {
		return fail(applyKeyMismatch, true, err)
	}

	if ack != nil && ack.Seq == req.ToSeq && ack.Manifest == req.ToManifest {
		return applyResult{Code: applyOK, Ack: ack.Encode()} // already there: a retry whose outcome was lost
	}
	if ack != nil && ack.Seq >= req.ToSeq {
		return fail(applyRollback, true, fmt.Errorf("%w: the difusor acknowledges cut %d (%s, manifest %.12s), the package brings cut %d",
			ErrRollback, ack.Seq, ack.ID, ack.Manifest, req.ToSeq))
	}

	var pc *packager.PackageContent
	var plan []staged
	seen := map[string]int{}
	ds, deferred := r.t.(targets.DeferredSyncer)
	meta := func(p *packager.PackageContent) error {
		pc = p
		d := p.Delta
		if d.FromSeq != 0 && (ack == nil || ack.Seq != d.FromSeq || ack.Manifest != d.FromManifest) {
			have := "no cut"
			if ack != nil {
				have = fmt.Sprintf("cut %d (manifest %.12s)", ack.Seq, ack.Manifest)
			}
			return fmt.Errorf("%w: the package starts from cut %d (manifest %.12s) but the difusor holds %s", errBaseChanged, d.FromSeq, d.FromManifest, have)
		}
		if d.ToSeq != req.ToSeq || d.ToManifest != req.ToManifest {
			return fmt.Errorf("%w: the package brings cut %d, the request announced cut %d", packager.ErrBadPackage, d.ToSeq, req.ToSeq)
		}
		return nil
	}
	file := func(ent packager.Entry, rd io.Reader) error {
		s := stageAs(seen, ent) // the destination directories are made by commit
		var err error
		if deferred {
			err = ds.WriteFileNoSync(ctx, s.name, rd, ent.Size)
		} else {
			err = r.t.WriteFile(ctx, s.name, rd, ent.Size)
		}
		if err != nil {
			return fmt.Errorf("stage %s: %w", ent.Path, err)
		}
		plan = append(plan, s)
		return nil
	}
	if _, err := packager.ReadPackage(body, pub, meta, file); err != nil {
		switch {
		case errors.Is(err, errBaseChanged):
			return fail(applyBaseChanged, false, err)
		case errors.Is(err, packager.ErrBadSignature):
			return fail(applyKeyMismatch, true, fmt.Errorf("%w (the difusor trusts another institute key)", err))
		case errors.Is(err, packager.ErrBadPackage):
			return fail(applyBadPackage, false, err)
		}
		return fail(applyFailed, targets.IsPermanent(err), err)
	}
	// The package must end exactly where the request said.
	if rest, _ := io.Copy(io.Discard, body); rest != 0 || body.N != 0 {
		return fail(applyBadPackage, false, fmt.Errorf("%w: %d bytes arrived, the request announced %d", packager.ErrBadPackage, req.PackageSize-body.N, req.PackageSize))
	}

	// Everything arrived and checked out: switch the root to the cut.
	if err := r.commit(ctx, plan, pc.Manifest); err != nil {
		return fail(applyFailed, targets.IsPermanent(err), err)
	}
	var prev []Retired
	if ack != nil {
		prev = ack.Retired
	}
	keep, due := r.planRetire(prev, pc.Manifest, pc.Delta.Deleted, now)
	na := &Ack{Format: AckFormat, Seq: pc.Manifest.Seq, ID: pc.Manifest.ID, Manifest: pc.Delta.ToManifest,
		Signature: packager.SignatureBase64(pc.Signature), Time: r.e.now().UTC().Truncate(time.Millisecond),
		Publisher: req.Publisher, Retired: sortedRetired(append(append([]Retired(nil), keep...), due...))}
	if err := r.writeAck(ctx, na); err != nil {
		return fail(applyFailed, targets.IsPermanent(err), err)
	}
	res := applyResult{Code: applyOK, Ack: na.Encode(), Files: len(plan)}
	for _, s := range plan {
		res.Bytes += s.e.Size
	}
	if err := r.deleteRetired(ctx, due, keep, pc.Manifest); err != nil {
		r.log.Warn("delete retired files (tried again at the next push)", zap.Error(err))
	} else {
		res.Deleted = len(due)
	}
	r.cleanStaging(ctx)
	return res
}

// trustKey returns the key packages must verify with: the one the difusor
// configured, or else the one pinned at TrustedKeyPath, pinning the
// publisher's on first use.
func (r *targetRun) trustKey(ctx context.Context, offered string, configured ed25519.PublicKey) (ed25519.PublicKey, error) {
	if configured != nil {
		return configured, nil
	}
	raw, err := base64.StdEncoding.DecodeString(offered)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("the publisher named no valid ed25519 public key")
	}
	pinned, err := r.t.ReadFile(ctx, TrustedKeyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data := packager.EncodePublicKey(ed25519.PublicKey(raw))
		tmp := StagingDir + "/publisher.pub"
		if err := r.t.WriteFile(ctx, tmp, bytes.NewReader(data), int64(len(data))); err != nil {
			return nil, fmt.Errorf("pin publisher key: %w", err)
		}
		if err := r.t.Rename(ctx, tmp, TrustedKeyPath); err != nil {
			return nil, fmt.Errorf("pin publisher key: %w", err)
		}
		r.log.Info("publisher key pinned on first use", zap.String("path", TrustedKeyPath))
		return ed25519.PublicKey(raw), nil
	case err != nil:
		return nil, fmt.Errorf("read pinned publisher key %s: %w", TrustedKeyPath, err)
	}
	key, err := packager.ParsePublicKey(pinned)
	if err != nil {
		return nil, fmt.Errorf("pinned publisher key %s: %w (remove it to pin the publisher's key again)", TrustedKeyPath, err)
	}
	if !key.Equal(ed25519.PublicKey(raw)) {
		return nil, fmt.Errorf("the cut is signed with a key other than the one pinned at %s on the difusor; if the institute changed its signing key, confirm it and remove that file (or pass --public-key)", TrustedKeyPath)
	}
	return key, nil
}

// errBaseChanged: the difusor does not hold the cut a package starts from.
var errBaseChanged = errors.New("the difusor's cut changed")
