package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/status"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// stringsFlag collects a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func cmdPush(ctx context.Context, args []string, stdout, stderr io.Writer, withCut bool) error {
	name := "push"
	if withCut {
		name = "cycle"
	}
	fs := newFlags(name)
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	verbose := fs.Bool("v", false, "log progress to the console")
	var only stringsFlag
	if !withCut {
		fs.Var(&only, "target", "push only to this target (repeatable)")
	}
	verify := fs.Bool("verify", false, "check that every target really holds the cut (sizes; content of files up to 4 MiB) and repair what differs")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := loadTargetsConfig(*cfgPath)
	if err != nil {
		return err
	}
	selected, err := selectTargets(c, only)
	if err != nil {
		return err
	}
	log, closeLog, err := newLogger(c, stderr, *verbose)
	if err != nil {
		return err
	}
	defer closeLog()

	if withCut {
		res, err := makeCut(ctx, c, cutFlags{}, log)
		if err != nil {
			return err
		}
		printCut(stdout, res)
	}
	pool := newTargetPool(c, log)
	defer pool.Close()
	return pushLoop(ctx, c, selected, pool, *verify, stdout, log)
}

func selectTargets(c *config.Config, only []string) ([]*config.Target, error) {
	var out []*config.Target
	for _, n := range only {
		t, ok := c.Target(n)
		if !ok {
			var names []string
			for _, t := range c.Targets {
				names = append(names, t.Name)
			}
			return nil, &usageError{fmt.Sprintf("--target %q is not in the config (targets: %s)", n, strings.Join(names, ", "))}
		}
		out = append(out, t)
	}
	if len(only) > 0 {
		return out, nil
	}
	return c.EnabledTargets(), nil
}

// pushLoop takes the push lock and pushes until no newer cut is waiting. If
// another process holds the lock, it says so and returns nil: that process
// picks the newest cut up before it lets go of the lock.
func pushLoop(ctx context.Context, c *config.Config, selected []*config.Target, pool *targetPool, verify bool, stdout io.Writer, log *zap.Logger) error {
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return err
	}
	key, err := packager.LoadPrivateKey(c.SigningKey)
	if err != nil {
		return err
	}
	for {
		lock, err := publisher.LockPush(c.StateDir)
		if errors.Is(err, publisher.ErrPushRunning) {
			fmt.Fprintf(stdout, "%v; it will push the latest cut before it stops\n", err)
			return nil
		}
		if err != nil {
			return err
		}
		startSeq := latestSeq(store)
		results, err := pushOnce(ctx, c, selected, pool, store, key.Public().(ed25519.PublicKey), verify, stdout, log)
		if err == nil {
			pruneStore(c, store, log) // under the lock, so no push reads what goes
		}
		lock.Unlock()
		if err != nil {
			return err
		}
		printResults(stdout, results)
		if ctx.Err() != nil || draining() {
			return errInterrupted
		}
		// A cut that appeared while the lock was held but after a target
		// finished: push again, unless another process now holds the lock.
		if latestSeq(store) != startSeq && anyBehind(results, latestSeq(store)) {
			continue
		}
		for _, r := range results {
			if r.Err != nil {
				return errFailed
			}
		}
		return nil
	}
}

func latestSeq(s *packager.Store) int64 {
	ci, err := s.Latest()
	if err != nil || ci == nil {
		return 0
	}
	return ci.Seq
}

func anyBehind(results []publisher.Result, seq int64) bool {
	for _, r := range results {
		if r.Err == nil && r.Ack != nil && r.Ack.Seq < seq {
			return true
		}
	}
	return false
}

func pushOnce(ctx context.Context, c *config.Config, selected []*config.Target, pool *targetPool, store *packager.Store, pub ed25519.PublicKey, verify bool, stdout io.Writer, log *zap.Logger) ([]publisher.Result, error) {
	db, err := state.Open(statePath(c))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if _, err := db.AbandonDeadAttempts(ctx, time.Now()); err != nil {
		log.Warn("close attempts of dead processes", zap.Error(err))
	}
	specs := make([]publisher.TargetSpec, 0, len(selected))
	for _, tc := range selected {
		t, err := pool.get(tc)
		if err != nil {
			return nil, err
		}
		spec := publisher.TargetSpec{Target: t, Limit: tc.Limit}
		if tc.Mode == config.ModeExec {
			spec.Apply = tc.ApplyCommand
		}
		specs = append(specs, spec)
	}
	host, _ := os.Hostname()
	eng := &publisher.Engine{
		Store: store, PublicKey: pub, DB: db, Log: log, Publisher: host,
		Uplink: c.Limits.Uplink, TargetsInFlight: c.Limits.TargetsInFlight, FilesInFlight: c.Limits.FilesInFlight,
		NoDelta:      c.Limits.WholeFiles,
		Retry:        publisher.RetryPolicy{Attempts: c.Retry.Attempts, Base: c.Retry.Base, Max: c.Retry.Max},
		CycleTimeout: c.Timeouts.Cycle, RetentionWindow: c.Retention.Window, Drain: drain, Verify: verify,
		Rotation: publisher.VerifyBudget{Period: c.Verify.Period, Every: c.Schedule.Every,
			Bytes: c.Verify.BytesPerPush, Files: c.Verify.FilesPerPush, Time: c.Verify.TimePerPush},
	}
	view := newProgressView(stdout)
	eng.OnProgress = view.update
	results := eng.Push(ctx, specs)
	view.close()
	return results, nil
}

// targetPool keeps one target, and so one SSH connection, per configured
// difusor across the pushes of a command: the daemon's cycles reuse
// connections (kept alive by keepalives, rebuilt when lost) instead of
// paying a handshake and new sessions on every difusor at every cut.
type targetPool struct {
	c   *config.Config
	log *zap.Logger
	mu  sync.Mutex
	ts  map[string]targets.Target
}

func newTargetPool(c *config.Config, log *zap.Logger) *targetPool {
	return &targetPool{c: c, log: log, ts: map[string]targets.Target{}}
}

// get returns the pool's target for tc, building it on first use.
func (p *targetPool) get(tc *config.Target) (targets.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.ts[tc.Name]; ok {
		return t, nil
	}
	t, err := newTarget(p.c, tc, p.log)
	if err != nil {
		return nil, err
	}
	p.ts[tc.Name] = t
	return t, nil
}

// Close closes every target of the pool.
func (p *targetPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, t := range p.ts {
		_ = t.Close()
		delete(p.ts, name)
	}
}

// newTarget builds the SFTP target for one configured difusor (mode exec
// runs its apply command over the same connection).
func newTarget(c *config.Config, tc *config.Target, log *zap.Logger) (targets.Target, error) {
	var pass []byte
	if tc.PassphraseEnv != "" {
		v, ok := os.LookupEnv(tc.PassphraseEnv)
		if !ok {
			// The name is not shown: it may be a passphrase written
			// where the variable's name belongs.
			return nil, fmt.Errorf("%w: target %s: the environment variable named by its passphrase_env is not set; export it in the environment prepcast runs in (systemd unit, cron line)", errConfig, tc.Name)
		}
		pass = []byte(v)
	}
	t, err := sftptarget.New(sftptarget.Config{
		Name: tc.Name, Address: tc.Address, User: tc.User, Root: tc.Root,
		IdentityFile: tc.IdentityFile, Passphrase: pass, KnownHosts: tc.KnownHosts, HostKey: tc.HostKey,
		DialTimeout: c.Timeouts.Dial, OpTimeout: c.Timeouts.Operation, Keepalive: c.Timeouts.Keepalive,
		FileMode: tc.FileMode, DirMode: tc.DirMode, AllowNonAtomicReplace: tc.AllowNonAtomicReplace,
		FsyncSessions: fsyncSessions(tc.FsyncSessions),
	}, log)
	if err != nil {
		return nil, fmt.Errorf("%w: target %s: %w", errConfig, tc.Name, err)
	}
	return t, nil
}

// fsyncSessions maps the config's fsync_sessions (0: the main session) to
// the SFTP target's (negative: the main session).
func fsyncSessions(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// printResults prints one line per target, failures first.
func printResults(w io.Writer, results []publisher.Result) {
	rs := slices.Clone(results)
	slices.SortStableFunc(rs, func(a, b publisher.Result) int {
		switch {
		case (a.Err != nil) == (b.Err != nil):
			return strings.Compare(a.Target, b.Target)
		case a.Err != nil:
			return -1
		}
		return 1
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tRESULT\tCUT\tFILES\tSENT\tRATE\tTOOK\tATTEMPTS\tCOPIED ON SERVER\tCAUSE")
	var failed []string
	full := map[string]string{}
	for _, r := range rs {
		cut, result, cause := "-", "ok", "-"
		if r.Ack != nil {
			cut = fmt.Sprintf("%d %s", r.Ack.Seq, r.Ack.ID)
		}
		if r.Err != nil {
			result, cause = "FAILED", status.Cause(r.Err.Error())
			if status.Clipped(r.Err.Error()) {
				failed = append(failed, r.Target)
				full[r.Target] = r.Err.Error()
			}
		} else if len(r.Repaired) > 0 {
			result = fmt.Sprintf("ok, repaired %d", len(r.Repaired))
		} else if r.Reconciled {
			result = "ok (reconciled)"
		}
		rate := "-"
		if bps, ok := r.Rate(); ok {
			rate = fmt.Sprintf("%.1f MB/s", bps/1e6)
		}
		// Files sent: those of the push, and those verification repaired.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Target, result, cut, r.Files+len(r.Repaired), status.FormatBytes(r.Bytes), rate,
			r.Duration.Round(time.Millisecond), r.Attempts, deltaColumn(r), cause)
	}
	tw.Flush()
	// How targets adapted to their servers, where they had to.
	for _, r := range rs {
		if r.Strategy != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Target, r.Strategy)
		}
	}
	status.WriteErrors(w, failed, full)
	for _, r := range rs {
		if len(r.Repaired) > 0 {
			fmt.Fprintf(w, "%s: repaired %d altered or missing files:\n", r.Target, len(r.Repaired))
			for i, p := range r.Repaired {
				if i == 20 {
					fmt.Fprintf(w, "    … and %d more (all in the log)\n", len(r.Repaired)-i)
					break
				}
				fmt.Fprintf(w, "    %s\n", termsafe.String(p))
			}
		}
	}
	// Bandwidth of the whole push: what left the uplink, and how fast.
	var bytes, copied int64
	var longest time.Duration
	acked := 0
	for _, r := range results {
		bytes += r.Bytes
		copied += r.Copied
		longest = max(longest, r.Duration)
		if r.Err == nil {
			acked++
		}
	}
	if longest > 0 {
		fmt.Fprintf(w, "%d of %d difusores acknowledged; %s sent in %s (%.1f MB/s over the uplink)\n", acked, len(results),
			status.FormatBytes(bytes), longest.Round(time.Millisecond), float64(bytes)/1e6/longest.Seconds())
		if copied > 0 {
			fmt.Fprintf(w, "%s copied on the difusores' servers from the files they served (copy-data), not sent\n", status.FormatBytes(copied))
		}
	}
}

// deltaColumn says what a target's servers copied from the files they
// served (range deltas): bytes and files, "-" for none.
func deltaColumn(r publisher.Result) string {
	if r.DeltaFiles == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%d files, %s of them sent)", status.FormatBytes(r.Copied), r.DeltaFiles, status.FormatBytes(r.Literal))
}
