package resultsgen

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"
)

// Options parameterise a replayed night. The zero value of every field means
// its default.
type Options struct {
	// Seed drives everything that is not IEE data: which actas a Scale below
	// 1 keeps and the bytes and sizes of the acta images.
	Seed uint64
	// Start is the time of cut 0, truncated to the minute. Default: the
	// opening of the Puebla 2024 PREP, 2024-06-02 20:00 UTC-6.
	Start time.Time
	// Interval is the time between cuts, a whole number of minutes (cut ids
	// have minute resolution). Default 15m.
	Interval time.Duration
	// Cuts is the number of cuts in the night. Default 97: 2024-06-02 20:00
	// to the IEE's final cut, 2024-06-03 20:00, both included.
	Cuts int
	// Replay is how much of the real night the cuts cover. Zero replays in
	// real time: cut k shows the IEE data as of opening + k*Interval, so with
	// the default Start a cut shows exactly what the IEE had at its own time.
	// Otherwise cut k shows opening + k*Replay/(Cuts-1), to the second:
	// Replay = 24h spreads any number of cuts over the whole night, ending on
	// the final results.
	Replay time.Duration
	// Scale is the fraction of actas kept, in (0, 1]. Default 1: every acta
	// (about 22,000 images, 8-10 GB with the default image sizes). Sampling is
	// per casilla, the same casillas in every election, deterministic by Seed.
	// Below 1 the CSVs hold only the kept actas and their counters are
	// computed over them.
	Scale float64
	// MinImage and MaxImage bound the size in bytes of an acta image (uniform,
	// both included). Default 200 KiB and 600 KiB; at least 64 bytes.
	MinImage, MaxImage int
	// Elections lists the elections to generate among "GUB", "DIP_LOC" and
	// "AYUN", in any order; they are always generated in that order. Default
	// all three.
	Elections []string
	// Workers is how many acta images are written concurrently. Default
	// GOMAXPROCS, at least 2.
	Workers int
}

// Stats describes what one WriteCut did.
type Stats struct {
	Files        int   // regular files in the cut
	Written      int   // files created or replaced
	Removed      int   // files removed because they do not belong to the cut (e.g. the previous cut's zip and JSON)
	Bytes        int64 // total size of the cut's files
	WrittenBytes int64 // bytes written
}

// Night is a replayed election night: a fixed sequence of cuts, each a
// complete results tree. A Night is immutable and safe for concurrent use;
// the trees it writes depend only on its Options.
type Night struct {
	opts      Options
	elections []*nightElection
	// pointerWritten, if set, is called by WriteCut after json/main.json is
	// written and before anything is removed; tests use it to check order.
	pointerWritten func()
}

// nightElection is one election restricted to the sampled actas.
type nightElection struct {
	*election
	rows []*row // in file order
}

// New checks opts, fills in defaults and prepares the night. The embedded IEE
// data is parsed once per process (about 0.1 s).
func New(opts Options) (*Night, error) {
	if opts.Start.IsZero() {
		opts.Start = opening
	}
	opts.Start = opts.Start.In(ieeZone).Truncate(time.Minute)
	if opts.Interval == 0 {
		opts.Interval = 15 * time.Minute
	}
	if opts.Interval < time.Minute || opts.Interval%time.Minute != 0 {
		return nil, fmt.Errorf("new night: interval %v is not a positive whole number of minutes; cut ids have minute resolution", opts.Interval)
	}
	if opts.Cuts == 0 {
		opts.Cuts = 97
	}
	if opts.Cuts < 0 {
		return nil, fmt.Errorf("new night: cuts %d is negative", opts.Cuts)
	}
	if opts.Replay < 0 {
		return nil, fmt.Errorf("new night: replay %v is negative; use 0 for real time or e.g. 24h for the whole night", opts.Replay)
	}
	if opts.Scale == 0 {
		opts.Scale = 1
	}
	if math.IsNaN(opts.Scale) || opts.Scale <= 0 || opts.Scale > 1 {
		return nil, fmt.Errorf("new night: scale %v is outside (0, 1]; use 1 for every acta or a fraction such as 0.01", opts.Scale)
	}
	if opts.MinImage == 0 {
		opts.MinImage = 200 << 10
	}
	if opts.MaxImage == 0 {
		opts.MaxImage = max(600<<10, opts.MinImage)
	}
	if opts.MinImage < minImageSize || opts.MaxImage < opts.MinImage {
		return nil, fmt.Errorf("new night: image sizes [%d, %d] invalid; need %d <= MinImage <= MaxImage", opts.MinImage, opts.MaxImage, minImageSize)
	}
	if opts.Workers == 0 {
		opts.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("new night: workers %d is negative", opts.Workers)
	}
	asked := slices.Clone(opts.Elections)
	if len(asked) == 0 {
		for _, s := range specs {
			asked = append(asked, s.code)
		}
	}
	opts.Elections = nil

	src, err := loadSource()
	if err != nil {
		return nil, err
	}
	n := &Night{opts: opts}
	for _, e := range src.elections {
		if !slices.Contains(asked, e.code) {
			continue
		}
		n.opts.Elections = append(n.opts.Elections, e.code)
		ne := &nightElection{election: e}
		for i := range e.rows {
			if r := &e.rows[i]; keep(opts.Seed, r.key, opts.Scale) {
				ne.rows = append(ne.rows, r)
			}
		}
		n.elections = append(n.elections, ne)
	}
	if len(n.elections) != len(asked) {
		return nil, fmt.Errorf("new night: elections %q: each must be one of GUB, DIP_LOC, AYUN, listed once", asked)
	}
	return n, nil
}

// keep reports whether the acta with sampling key key is in a night of the
// given seed and scale.
func keep(seed, key uint64, scale float64) bool {
	if scale >= 1 {
		return true
	}
	return float64(mix64(seed^mix64(key))>>11)/(1<<53) < scale
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Options returns the night's options with every default filled in.
func (n *Night) Options() Options {
	o := n.opts
	o.Elections = slices.Clone(o.Elections)
	return o
}

// Cuts returns the number of cuts in the night.
func (n *Night) Cuts() int { return n.opts.Cuts }

// CutTime returns the time of cut k, Start + k*Interval, in UTC-6. k may be
// any integer; only 0 <= k < Cuts can be written.
func (n *Night) CutTime(k int) time.Time {
	return n.opts.Start.Add(time.Duration(k) * n.opts.Interval)
}

// CutID returns the id of cut k, YYYYMMDD_HHMM of its time in UTC-6.
func (n *Night) CutID(k int) string { return n.CutTime(k).Format("20060102_1504") }

// ReplayTime returns the instant of the real 2024 night whose IEE data cut k
// shows (see Options.Replay), to the second.
func (n *Night) ReplayTime(k int) time.Time {
	if n.opts.Replay == 0 {
		return opening.Add(time.Duration(k) * n.opts.Interval)
	}
	secs := int64(n.opts.Replay / time.Second)
	if n.opts.Cuts > 1 {
		secs = secs * int64(k) / int64(n.opts.Cuts-1)
	}
	return opening.Add(time.Duration(secs) * time.Second)
}

// WriteCut is WriteCutContext without cancellation.
func (n *Night) WriteCut(dir string, k int) (Stats, error) {
	return n.WriteCutContext(context.Background(), dir, k)
}

// WriteCutContext brings dir to the state of cut k in place, like a PREP
// generator: it writes only files whose content differs (new acta images,
// changed CSVs, the cut's zip and its JSON directory), each through a
// temporary file in the same directory renamed over its final name, so a
// reader never sees a partial file; acta images already present with the
// right size are left untouched. json/main.json is written after every other
// file, and only then are files that do not belong to cut k removed (the
// previous cut's zip and JSON directory, images of actas a going-back cut no
// longer shows). Every file json/main.json lists with a hash is at a path no
// other cut of the night writes (see the package documentation), so the
// pointer never names a file that a later cut rewrites. Files outside the
// generator's directories (datos/, json/, actas/) are never touched.
// Concurrent calls on the same dir are not allowed. Nothing is fsynced: the
// tree is atomic for readers, not durable.
func (n *Night) WriteCutContext(ctx context.Context, dir string, k int) (Stats, error) {
	if k < 0 || k >= n.opts.Cuts {
		return Stats{}, fmt.Errorf("write cut %d: out of range; the night has cuts 0 to %d", k, n.opts.Cuts-1)
	}
	p, err := n.plan(k, n.ReplayTime(k))
	if err != nil {
		return Stats{}, fmt.Errorf("write cut %s: %w", n.CutID(k), err)
	}
	st, err := n.sync(ctx, dir, p)
	if err != nil {
		return st, fmt.Errorf("write cut %s to %s: %w", n.CutID(k), dir, err)
	}
	return st, nil
}
