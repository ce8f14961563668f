package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/status"
)

func cmdKeygen(args []string, stdout io.Writer) error {
	fs := newFlags("keygen")
	out := fs.String("out", ".", "directory for manifest.key (mode 0600) and manifest.pub")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	priv, pub, err := packager.GenerateKey(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (private, keep it on the publisher; set signing_key to it)\nwrote %s (public, give it to anyone who verifies cuts)\n", priv, pub)
	if k, err := packager.LoadPublicKey(pub); err == nil {
		fmt.Fprintln(stdout)
		printPublicKey(stdout, k)
	}
	return nil
}

func cmdCut(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cut")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	source := fs.String("source", "", "results tree (overrides source in the config)")
	rehash := fs.Bool("rehash", false, "read and hash every file, trusting no earlier scan")
	allowEmpty := fs.Bool("allow-empty", false, "make a cut even if nothing changed")
	verbose := fs.Bool("v", false, "log progress to the console")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *source != "" {
		abs, err := filepath.Abs(*source)
		if err != nil {
			return err
		}
		c.Source = abs
	}
	log, closeLog, err := newLogger(c, stderr, *verbose)
	if err != nil {
		return err
	}
	defer closeLog()
	res, err := makeCut(ctx, c, cutFlags{rehash: *rehash, allowEmpty: *allowEmpty}, log)
	if err != nil {
		return err
	}
	printCut(stdout, res)
	return nil
}

type cutFlags struct{ rehash, allowEmpty bool }

// makeCut builds the next cut of c's results tree. It does not prune the
// store: that happens after a push (see pruneStore), off the path from a
// new results tree to the difusores.
func makeCut(ctx context.Context, c *config.Config, f cutFlags, log *zap.Logger) (*packager.CutResult, error) {
	if fi, err := os.Stat(c.Source); err != nil {
		return nil, fmt.Errorf("%w: source %s: %w (set source in the config or pass --source DIR)", errConfig, c.Source, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%w: source %s is not a directory (set source in the config or pass --source DIR)", errConfig, c.Source)
	}
	key, err := packager.LoadPrivateKey(c.SigningKey)
	if err != nil {
		return nil, err
	}
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := store.Cut(ctx, packager.CutOptions{
		Source: c.Source, Key: key, Zone: c.Zone, Pointers: c.Pointer, Rehash: f.rehash, AllowEmpty: f.allowEmpty,
		Package: wantsPackages(c), Log: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("cut", zap.Int64("seq", res.Info.Seq), zap.String("id", res.Info.ID), zap.Bool("no_change", res.NoChange),
		zap.Int("hashed", res.Hashed), zap.Int64("hashed_bytes", res.HashedBytes), zap.Duration("took", time.Since(start)),
		zap.Duration("scan", res.Phases["scan"]), zap.Duration("hash", res.Phases["hash"]), zap.Duration("package", res.Phases["package"]),
		zap.Duration("sync", res.Phases["sync"]))
	return res, nil
}

// wantsPackages reports whether a cut should build its package: when some
// enabled target receives packages (mode exec). Otherwise packages are
// built only if a target ever asks for one.
func wantsPackages(c *config.Config) bool {
	for _, t := range c.Targets {
		if !t.Disabled && t.Mode == config.ModeExec {
			return true
		}
	}
	return false
}

// pruneStore applies the retention setting to the local store, keeping
// every cut a target has acknowledged (its next delta starts there).
func pruneStore(c *config.Config, store *packager.Store, log *zap.Logger) {
	protect, err := ackedSeqs(c)
	if err != nil {
		log.Warn("prune store: read acks", zap.Error(err))
		return
	}
	st, err := store.Prune(c.Retention.Cuts, protect)
	if err != nil {
		log.Warn("prune store", zap.Error(err))
		return
	}
	if st.Cuts+st.Packages+st.Objects > 0 {
		log.Info("pruned store", zap.Int("cuts", st.Cuts), zap.Int("packages", st.Packages), zap.Int("objects", st.Objects), zap.Int64("freed_bytes", st.FreedByte))
	}
}

// ackedSeqs returns the cuts that targets acknowledge, by the local mirror.
func ackedSeqs(c *config.Config) (map[int64]bool, error) {
	db, err := state.Open(statePath(c))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	acks, err := db.Acks(context.Background())
	if err != nil {
		return nil, err
	}
	out := map[int64]bool{}
	for _, a := range acks {
		out[a.Seq] = true
	}
	return out, nil
}

func statePath(c *config.Config) string { return filepath.Join(c.StateDir, "state.db") }

func printCut(w io.Writer, res *packager.CutResult) {
	ci := res.Info
	if res.NoChange {
		fmt.Fprintf(w, "no change since cut %d (%s); no new cut (use --allow-empty to force one)\n", ci.Seq, ci.ID)
		return
	}
	pkg := "; no package (no target in package mode)"
	if ci.Package != "" {
		pkg = "; package " + status.FormatBytes(ci.PackageSize)
	}
	fmt.Fprintf(w, "cut %d %s: %d files, %s; delta from cut %d: %d files, %s, %d deleted%s\n",
		ci.Seq, ci.ID, ci.Files, status.FormatBytes(ci.Bytes), ci.Seq-1, ci.DeltaFiles, status.FormatBytes(ci.DeltaBytes), ci.DeletedFiles, pkg)
}

func cmdCuts(args []string, stdout io.Writer) error {
	fs := newFlags("cuts")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, store, err := loadStore(*cfgPath)
	if err != nil {
		return err
	}
	cuts, err := store.Cuts()
	if err != nil {
		return err
	}
	if len(cuts) == 0 {
		fmt.Fprintln(stdout, "no cuts yet (run prepcast cut)")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SEQ\tID\tCREATED\tFILES\tBYTES\tDELTA FILES\tDELTA BYTES\tDELETED\tPACKAGE\t")
	for _, ci := range cuts {
		pkg := "-" // none built (no target in package mode) or pruned
		if ci.Package != "" {
			pkg = status.FormatBytes(ci.PackageSize)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\t\n", ci.Seq, ci.ID, ci.Created.In(c.Zone).Format("2006-01-02 15:04:05"),
			ci.Files, status.FormatBytes(ci.Bytes), ci.DeltaFiles, status.FormatBytes(ci.DeltaBytes), ci.DeletedFiles, pkg)
	}
	return tw.Flush()
}
