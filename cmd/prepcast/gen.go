package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prepcast/prepcast/resultsgen"
	"github.com/prepcast/prepcast/status"
)

func init() {
	register(&command{name: "gen", summary: "write a Puebla 2024 results tree (real IEE data) into a directory and advance it cut by cut, to try prepcast against your own servers",
		required: []string{"dir"},
		examples: []string{
			"prepcast gen --dir /srv/prep-results            # the first cut, then the next at every call (--next)",
			"prepcast gen --dir /srv/prep-results --cut 97   # jump to the final results",
			"prepcast gen --dir /srv/prep-results && prepcast cycle --config prepcast.yaml",
		},
		run: cmdGen})
}

// genSeed fixes the acta images' bytes, so every tree of the same --cuts
// and --scale is the same.
const genSeed = 2024

// cmdGen writes cut --cut (or the one after the tree's current cut) of the
// replayed Puebla 2024 night into --dir, in place, as a PREP generator
// would: json/main.json last, the previous cut's files removed after it.
func cmdGen(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("gen")
	dir := fs.String("dir", "", "directory of the results tree (created if missing); point source in the config at it")
	cut := fs.Int("cut", 0, "write this cut, 1 to --cuts (default: the cut after the tree's current one, or 1)")
	next := fs.Bool("next", false, "write the cut after the tree's current one (or cut 1): what gen does without --cut")
	cuts := fs.Int("cuts", 97, "cuts in the night, spread over the real 24 hours (97: every 15 minutes); use the same value on every call")
	scale := fs.Float64("scale", 0.05, "fraction of the ~22,000 actas (1 = all, about 8 GB of images); use the same value on every call")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *next && *cut != 0 {
		return &usageError{"gen: give --cut N or --next, not both"}
	}
	if *dir == "" {
		return &usageError{"gen: give --dir DIR, the directory to write the results tree to"}
	}
	if *cuts < 1 || *cuts > 10000 {
		return &usageError{fmt.Sprintf("gen: --cuts %d: want 1 to 10000", *cuts)}
	}
	if *scale <= 0 || *scale > 1 {
		return &usageError{fmt.Sprintf("gen: --scale %g: want more than 0 and at most 1", *scale)}
	}
	k := *cut
	if k == 0 {
		cur, err := currentGenCut(*dir)
		if err != nil {
			return err
		}
		k = cur + 1
		if k > *cuts {
			fmt.Fprintf(stdout, "%s already holds the final cut (%d of %d); nothing to do\n", *dir, cur, *cuts)
			return nil
		}
	}
	if k < 1 || k > *cuts {
		return &usageError{fmt.Sprintf("gen: --cut %d: want 1 to %d (--cuts)", k, *cuts)}
	}
	night, err := resultsgen.New(resultsgen.Options{Seed: genSeed, Cuts: *cuts, Interval: 15 * time.Minute, Replay: 24 * time.Hour,
		Scale: *scale, MinImage: 20 << 10, MaxImage: 80 << 10})
	if err != nil {
		return &usageError{"gen: " + err.Error()}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("%w: --dir: %w", errConfig, err)
	}
	st, err := night.WriteCutContext(ctx, *dir, k-1)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cut %d of %d (%s, the IEE's data as of %s UTC-6) in %s: %d files, %s; %d written (%s), %d removed\n",
		k, *cuts, night.CutID(k-1), night.ReplayTime(k-1).Format("2006-01-02 15:04"), *dir, st.Files, status.FormatBytes(st.Bytes),
		st.Written, status.FormatBytes(st.WrittenBytes), st.Removed)
	return nil
}

// currentGenCut returns the cut (1-based) the tree in dir holds by its
// json/main.json, or 0 for an empty or missing directory.
func currentGenCut(dir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "json", "main.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var m struct {
		Cut *struct {
			Index *int `json:"index"`
		} `json:"cut"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Cut == nil || m.Cut.Index == nil {
		return 0, fmt.Errorf("%w: %s holds a json/main.json that prepcast gen did not write; give --cut N or another --dir", errConfig, dir)
	}
	return *m.Cut.Index + 1, nil
}
