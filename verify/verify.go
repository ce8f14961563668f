// Package verify checks, over plain HTTP(S) as any reader sees a site, that
// a difusor serves exactly a cut signed by the institute's key: it fetches
// the served pointer, finds the signed manifest of the cut the pointer
// belongs to in the site's published proof (.well-known/prepcast/), checks
// the signature, and hashes the served files against the manifest.
//
// The site is hostile: every fetch is bounded (internal/webfetch), every
// file's size is capped at its signed size, and nothing the site says is
// believed unless it matches the signed manifest.
package verify

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prepcast/prepcast/internal/webfetch"
	"github.com/prepcast/prepcast/packager"
)

// DefaultPointer is the pointer a site is checked by.
const DefaultPointer = "json/main.json"

// WantCacheControl is the Cache-Control rule json/main.json must be served
// with (the call for difusores' exact words).
const WantCacheControl = "no-cache, no-store, must-revalidate"

// Caps on what is read from a site before a signed size is known.
const (
	MaxPointerSize   = 4 << 20
	MaxManifestSize  = 64 << 20
	MaxSignatureSize = 4 << 10
	maxCandidates    = 8 // newest listed cuts tried for the pointer
)

// Kind is how a served file differs from the signed cut.
type Kind string

// The kinds of mismatch.
const (
	Changed    Kind = "changed"    // served, but not the signed bytes
	Missing    Kind = "missing"    // 404 or 410
	Unreadable Kind = "unreadable" // another status, or the transfer failed
)

// Mismatch is one file the site does not serve as signed.
type Mismatch struct {
	Path   string `json:"path"`
	Kind   Kind   `json:"kind"`
	Status int    `json:"http_status,omitempty"`
	Detail string `json:"detail,omitempty"` // why, in English; from the site: escape before printing
}

// Problem codes: why no signed cut could be established for the site.
const (
	ProblemNoProof      = "no_proof"           // the proof index is not served (Status) or is not an index
	ProblemBadSignature = "bad_signature"      // a listed manifest is not signed by the key
	ProblemNotSigned    = "pointer_not_signed" // the pointer matches no listed signed cut
	ProblemPointer      = "pointer_unreadable" // the pointer is not served (see Mismatches)
)

// Warning codes.
const (
	WarnCacheControlMissing = "cache_control_missing" // json/main.json has no Cache-Control
	WarnCacheControlWeak    = "cache_control_weak"    // it has one, but not WantCacheControl
)

// Warning is something a site should fix that does not make it serve
// other bytes than signed.
type Warning struct {
	Code  string `json:"code"`
	Value string `json:"value,omitempty"` // from the site: escape before printing
}

// Report is the verdict on one site.
type Report struct {
	URL           string        `json:"url"`
	Fingerprint   string        `json:"key_fingerprint"`
	Seq           int64         `json:"seq,omitempty"`
	ID            string        `json:"id,omitempty"`
	Created       time.Time     `json:"signed_time,omitzero"`
	Age           time.Duration `json:"-"`
	AgeSeconds    float64       `json:"age_seconds"` // since the cut was signed
	Manifest      string        `json:"manifest_sha256,omitempty"`
	FilesInCut    int           `json:"files_in_cut"`
	Checked       int           `json:"files_checked"`
	CheckedBytes  int64         `json:"bytes_checked"`
	Full          bool          `json:"full"`
	Problem       string        `json:"problem,omitempty"`
	ProblemStatus int           `json:"problem_http_status,omitempty"`
	ProblemDetail string        `json:"problem_detail,omitempty"`
	Mismatches    []Mismatch    `json:"mismatches"`
	CacheControl  string        `json:"cache_control"`
	Warnings      []Warning     `json:"warnings"`
	Attempts      int           `json:"attempts"`
	Duration      time.Duration `json:"-"`
	Seconds       float64       `json:"duration_seconds"`
	VerifiedAt    time.Time     `json:"verified_at"`
	PointerSHA256 string        `json:"pointer_sha256,omitempty"`
	PointerStatus int           `json:"pointer_http_status,omitempty"`
}

// OK reports whether the site serves exactly a cut signed by the key.
func (r *Report) OK() bool { return r.Problem == "" && len(r.Mismatches) == 0 && r.Seq > 0 }

// Options says what to verify and how.
type Options struct {
	URL       string            // the site's base URL (the directory serving the results root)
	PublicKey ed25519.PublicKey // the institute's key
	Client    *webfetch.Client
	Pointer   string // default DefaultPointer
	// Full hashes every file; otherwise the pointers, every CSV and JSON
	// file and a random sample of the others (SampleRate, at least
	// SampleMin) are hashed.
	Full       bool
	SampleRate float64 // default 0.02
	SampleMin  int     // default 50
	// Select, when set, replaces the sample: it returns the entries to
	// hash besides the pointers (the institute's rotating check).
	Select      func(m *packager.Manifest) []packager.Entry
	Concurrency int           // files fetched at once (default 8)
	Attempts    int           // tries when the site changes cut meanwhile (default 5)
	Settle      time.Duration // wait before trying again (default 2 s)
	Now         func() time.Time
	Rand        *rand.Rand
}

// ErrUsage is wrapped by errors for bad options.
var ErrUsage = errors.New("usage")

// Run verifies the site. It returns an error only when the site cannot be
// reached at all (wrapping webfetch.ErrUnreachable) or the options are bad
// (wrapping ErrUsage); every other finding is in the Report.
func Run(ctx context.Context, o Options) (*Report, error) {
	base, err := normalizeBase(o.URL)
	if err != nil {
		return nil, err
	}
	if len(o.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: a public key is required", ErrUsage)
	}
	if o.Client == nil {
		return nil, fmt.Errorf("%w: no HTTP client", ErrUsage)
	}
	if o.Pointer == "" {
		o.Pointer = DefaultPointer
	}
	if o.SampleRate <= 0 {
		o.SampleRate = 0.02
	}
	if o.SampleMin <= 0 {
		o.SampleMin = 50
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	v := &verifier{o: o, base: base, manifests: map[string]*signedCut{}}
	start := o.Now()
	var rep *Report
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		rep, err = v.once(ctx)
		if err != nil {
			return nil, err
		}
		rep.Attempts = attempt
		if rep.OK() || rep.Problem == ProblemBadSignature || attempt == o.Attempts {
			break
		}
		// The site may be switching cuts: a new pointer, or a newer cut
		// listed whose files are being committed. Try again then.
		moved, err := v.moved(ctx, rep)
		if err != nil {
			return nil, err
		}
		if !moved {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.Settle):
		}
	}
	rep.Duration = o.Now().Sub(start)
	rep.Seconds = rep.Duration.Seconds()
	rep.VerifiedAt = o.Now().UTC()
	return rep, nil
}

type signedCut struct {
	m   *packager.Manifest
	sha string
}

type verifier struct {
	o         Options
	base      *url.URL
	manifests map[string]*signedCut // by proof name
	newest    int64                 // newest seq listed in the index at the last look
}

func normalizeBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an http:// or https:// URL of a site", ErrUsage, s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: %q: give the site's base URL without ?query or #fragment", ErrUsage, s)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, nil
}

// fileURL is the URL of a root-relative slash path, each element escaped.
func (v *verifier) fileURL(rel string) string {
	els := strings.Split(rel, "/")
	for i, e := range els {
		els[i] = url.PathEscape(e)
	}
	u := *v.base
	ref, _ := url.Parse(strings.Join(els, "/"))
	return u.ResolveReference(ref).String()
}

func (v *verifier) once(ctx context.Context) (*Report, error) {
	rep := &Report{URL: v.base.String(), Fingerprint: packager.Fingerprint(v.o.PublicKey), Full: v.o.Full,
		Mismatches: []Mismatch{}, Warnings: []Warning{}}
	c := v.o.Client
	ptr, err := c.Get(ctx, v.fileURL(v.o.Pointer), MaxPointerSize)
	if err != nil {
		if errors.Is(err, webfetch.ErrUnreachable) {
			return nil, err
		}
		rep.Problem, rep.ProblemDetail = ProblemPointer, errText(err)
		rep.Mismatches = append(rep.Mismatches, Mismatch{Path: v.o.Pointer, Kind: kindOf(err), Detail: errText(err)})
		return rep, nil
	}
	rep.PointerStatus = ptr.Status
	if ptr.Status != http.StatusOK {
		rep.Problem, rep.ProblemStatus = ProblemPointer, ptr.Status
		rep.Mismatches = append(rep.Mismatches, statusMismatch(v.o.Pointer, ptr.Status))
		return rep, nil
	}
	rep.PointerSHA256 = ptr.SHA256
	rep.CacheControl = ptr.Header.Get("Cache-Control")
	rep.Warnings = cacheWarnings(rep.CacheControl)

	sc, err := v.findCut(ctx, rep, ptr.SHA256)
	if err != nil || sc == nil {
		return rep, err
	}
	m := sc.m
	rep.Seq, rep.ID, rep.Created, rep.Manifest = m.Seq, m.ID, m.Created, sc.sha
	rep.Age = v.o.Now().Sub(m.Created)
	rep.AgeSeconds = rep.Age.Seconds()
	rep.FilesInCut = m.Files

	todo := v.choose(m)
	rep.Checked = len(todo) + 1 // and the pointer, hashed above
	if e, ok := m.Lookup(v.o.Pointer); ok {
		rep.CheckedBytes = e.Size
	}
	var mu sync.Mutex
	sem := make(chan struct{}, v.o.Concurrency)
	var wg sync.WaitGroup
	for _, e := range todo {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			mm := v.checkFile(ctx, e)
			mu.Lock()
			defer mu.Unlock()
			rep.CheckedBytes += e.Size
			if mm != nil {
				rep.Mismatches = append(rep.Mismatches, *mm)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(rep.Mismatches, func(i, j int) bool { return rep.Mismatches[i].Path < rep.Mismatches[j].Path })
	return rep, nil
}

// findCut returns the signed cut whose manifest lists the pointer with the
// served hash, or nil with rep.Problem set.
func (v *verifier) findCut(ctx context.Context, rep *Report, ptrSHA string) (*signedCut, error) {
	c := v.o.Client
	idxResp, err := c.Get(ctx, v.fileURL(packager.ProofIndexPath), packager.MaxProofIndexSize)
	if err != nil {
		if errors.Is(err, webfetch.ErrUnreachable) {
			return nil, err
		}
		rep.Problem, rep.ProblemDetail = ProblemNoProof, errText(err)
		return nil, nil
	}
	if idxResp.Status != http.StatusOK {
		rep.Problem, rep.ProblemStatus = ProblemNoProof, idxResp.Status
		return nil, nil
	}
	idx, err := packager.ParseProofIndex(idxResp.Body)
	if err != nil {
		rep.Problem, rep.ProblemDetail = ProblemNoProof, err.Error()
		return nil, nil
	}
	if n := len(idx.Cuts); n > 0 {
		v.newest = idx.Cuts[n-1].Seq
	}
	tried := 0
	for i := len(idx.Cuts) - 1; i >= 0 && tried < maxCandidates; i-- {
		pc := idx.Cuts[i]
		tried++
		sc, err := v.signed(ctx, rep, pc)
		if err != nil || sc == nil {
			return nil, err
		}
		if e, ok := sc.m.Lookup(v.o.Pointer); ok && e.SHA256 == ptrSHA {
			return sc, nil
		}
	}
	rep.Problem = ProblemNotSigned
	rep.Mismatches = append(rep.Mismatches, Mismatch{Path: v.o.Pointer, Kind: Changed,
		Detail: fmt.Sprintf("matches none of the %d newest signed cuts the site lists", tried)})
	return nil, nil
}

// signed fetches and checks one listed cut's manifest and signature (once
// per run), or sets rep.Problem.
func (v *verifier) signed(ctx context.Context, rep *Report, pc packager.ProofCut) (*signedCut, error) {
	name := packager.ProofName(pc.Seq, pc.Manifest)
	if sc, ok := v.manifests[name]; ok {
		return sc, nil
	}
	c := v.o.Client
	fail := func(status int, detail string) (*signedCut, error) {
		rep.Problem, rep.ProblemStatus, rep.ProblemDetail = ProblemNoProof, status, fmt.Sprintf("cut %d: %s", pc.Seq, detail)
		return nil, nil
	}
	mr, err := c.Get(ctx, v.fileURL(packager.ProofManifestPath(pc.Seq, pc.Manifest)), MaxManifestSize)
	if err != nil {
		if errors.Is(err, webfetch.ErrUnreachable) {
			return nil, err
		}
		return fail(0, "manifest: "+errText(err))
	}
	if mr.Status != http.StatusOK {
		return fail(mr.Status, "manifest not served")
	}
	sr, err := c.Get(ctx, v.fileURL(packager.ProofSignaturePath(pc.Seq, pc.Manifest)), MaxSignatureSize)
	if err != nil {
		if errors.Is(err, webfetch.ErrUnreachable) {
			return nil, err
		}
		return fail(0, "signature: "+errText(err))
	}
	if sr.Status != http.StatusOK {
		return fail(sr.Status, "signature not served")
	}
	if err := packager.Verify(v.o.PublicKey, mr.Body, sr.Body); err != nil {
		rep.Problem, rep.ProblemDetail = ProblemBadSignature, fmt.Sprintf("cut %d: %v", pc.Seq, err)
		return nil, nil
	}
	m, err := packager.ParseManifest(mr.Body)
	if err != nil {
		// Signed but unreadable: the key signed something that is not a
		// manifest; nothing served can match it.
		rep.Problem, rep.ProblemDetail = ProblemBadSignature, fmt.Sprintf("cut %d: signed data is not a manifest: %v", pc.Seq, err)
		return nil, nil
	}
	sc := &signedCut{m: m, sha: packager.Hash(mr.Body)}
	if m.Seq != pc.Seq || sc.sha != pc.Manifest {
		return fail(0, fmt.Sprintf("the index names manifest %d/%.12s but the file holds %d/%.12s", pc.Seq, pc.Manifest, m.Seq, sc.sha))
	}
	v.manifests[name] = sc
	return sc, nil
}

// choose returns the entries to hash besides the pointer already fetched:
// every file with Full; otherwise the other pointers, every CSV and JSON
// file, and a random sample of the rest.
func (v *verifier) choose(m *packager.Manifest) []packager.Entry {
	var out, rest []packager.Entry
	for _, e := range m.Entries {
		switch {
		case e.Path == v.o.Pointer:
		case v.o.Full || m.IsPointer(e.Path):
			out = append(out, e)
		case v.o.Select == nil && isData(e.Path):
			out = append(out, e)
		default:
			rest = append(rest, e)
		}
	}
	if v.o.Full {
		return out
	}
	if v.o.Select != nil {
		for _, e := range v.o.Select(m) {
			if e.Path != v.o.Pointer && !m.IsPointer(e.Path) {
				out = append(out, e)
			}
		}
		return out
	}
	n := int(float64(len(rest))*v.o.SampleRate + 0.999)
	n = min(max(n, v.o.SampleMin), len(rest))
	v.o.Rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	return append(out, rest[:n]...)
}

func isData(p string) bool {
	switch strings.ToLower(path.Ext(p)) {
	case ".csv", ".json":
		return true
	}
	return false
}

// checkFile hashes one served file against its entry; nil when equal.
func (v *verifier) checkFile(ctx context.Context, e packager.Entry) *Mismatch {
	r, err := v.o.Client.Hash(ctx, v.fileURL(e.Path), e.Size)
	if err != nil {
		if errors.Is(err, webfetch.ErrTooLarge) {
			return &Mismatch{Path: e.Path, Kind: Changed, Detail: fmt.Sprintf("longer than the signed %d bytes", e.Size)}
		}
		return &Mismatch{Path: e.Path, Kind: Unreadable, Detail: errText(err)}
	}
	if r.Status != http.StatusOK {
		mm := statusMismatch(e.Path, r.Status)
		return &mm
	}
	if r.Size != e.Size || r.SHA256 != e.SHA256 {
		return &Mismatch{Path: e.Path, Kind: Changed, Detail: fmt.Sprintf("served %d bytes with SHA-256 %.12s…, signed %d bytes with %.12s…", r.Size, r.SHA256, e.Size, e.SHA256)}
	}
	return nil
}

// moved reports whether the site changed cut since rep was made: another
// pointer, or a newer cut listed (files of a push being committed).
func (v *verifier) moved(ctx context.Context, rep *Report) (bool, error) {
	if rep.Seq > 0 && v.newest > rep.Seq {
		return true, nil
	}
	ptr, err := v.o.Client.Get(ctx, v.fileURL(v.o.Pointer), MaxPointerSize)
	if err != nil {
		if errors.Is(err, webfetch.ErrUnreachable) {
			return false, err
		}
		return false, nil
	}
	if ptr.Status == http.StatusOK && ptr.SHA256 != rep.PointerSHA256 {
		return true, nil
	}
	// The same pointer, but the index may list a newer cut by now.
	idx, err := v.o.Client.Get(ctx, v.fileURL(packager.ProofIndexPath), packager.MaxProofIndexSize)
	if err != nil || idx.Status != http.StatusOK {
		return false, nil
	}
	x, perr := packager.ParseProofIndex(idx.Body)
	if perr != nil || len(x.Cuts) == 0 {
		return false, nil
	}
	return rep.Seq > 0 && x.Cuts[len(x.Cuts)-1].Seq > rep.Seq, nil
}

func statusMismatch(p string, status int) Mismatch {
	if status == http.StatusNotFound || status == http.StatusGone {
		return Mismatch{Path: p, Kind: Missing, Status: status}
	}
	return Mismatch{Path: p, Kind: Unreadable, Status: status}
}

func kindOf(err error) Kind {
	if errors.Is(err, webfetch.ErrTooLarge) {
		return Changed
	}
	return Unreadable
}

func errText(err error) string {
	var fe *webfetch.Error
	if errors.As(err, &fe) && fe.Kind != nil {
		if fe.Err != nil {
			return fe.Kind.Error() + ": " + fe.Err.Error()
		}
		return fe.Kind.Error()
	}
	return err.Error()
}

// cacheWarnings checks json/main.json's Cache-Control against the rule.
func cacheWarnings(cc string) []Warning {
	if strings.TrimSpace(cc) == "" {
		return []Warning{{Code: WarnCacheControlMissing}}
	}
	have := map[string]bool{}
	for _, d := range strings.Split(strings.ToLower(cc), ",") {
		have[strings.TrimSpace(d)] = true
	}
	for _, want := range []string{"no-cache", "no-store", "must-revalidate"} {
		if !have[want] {
			return []Warning{{Code: WarnCacheControlWeak, Value: cc}}
		}
	}
	return []Warning{}
}
