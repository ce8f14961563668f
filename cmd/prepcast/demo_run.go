package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/prepcast/prepcast/apply"
	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/sftpd"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/resultsgen"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/status"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// runDemo replays the Puebla 2024 election night to local SFTP difusores on
// 127.0.0.1: no config, no keys, no network.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo")
	cuts := fs.Int("cuts", 96, "cuts in the night (15 minutes apart, from 2024-06-02 20:00)")
	difusores := fs.Int("difusores", 5, "local difusores to publish to")
	speedFlag := fs.String("speed", "1500", `clock acceleration ("1500": a 15-minute cut every 0.6 s), or "max"`)
	scale := fs.Float64("scale", 0.05, "fraction of the night's actas (1 = all ~22,000 images)")
	keep := fs.Bool("keep", false, "keep the webroots, store and logs after the demo")
	verbose := fs.Bool("v", false, "log every push")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var speed float64
	if *speedFlag != "max" {
		v, err := strconv.ParseFloat(*speedFlag, 64)
		if err != nil || v <= 0 {
			return &usageError{fmt.Sprintf("--speed %q: want a positive number or max", *speedFlag)}
		}
		speed = v
	}
	if *cuts < 1 || *difusores < 1 || *difusores > 50 || *scale <= 0 || *scale > 1 {
		return &usageError{"demo: --cuts ≥ 1, --difusores 1..50, --scale in (0, 1]"}
	}

	dir, err := os.MkdirTemp("", "prepcast-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	src, stateDir := filepath.Join(dir, "results"), filepath.Join(dir, "state")
	for _, d := range []string{src, stateDir, filepath.Join(dir, "keys"), filepath.Join(dir, "difusores")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	keyPath, _, err := packager.GenerateKey(filepath.Join(dir, "keys"))
	if err != nil {
		return err
	}
	key, err := packager.LoadPrivateKey(keyPath)
	if err != nil {
		return err
	}
	zone, _ := time.LoadLocation("America/Mexico_City")
	cfg := &config.Config{StateDir: stateDir, Source: src, Zone: zone, ZoneName: zone.String(), Pointer: []string{"json/main.json"},
		MaxLag: 30 * time.Minute, Retention: config.Retention{Cuts: 3, Window: 30 * time.Minute}}
	log, closeLog, err := newLogger(cfg, stderr, *verbose)
	if err != nil {
		return err
	}
	defer closeLog()

	night, err := resultsgen.New(resultsgen.Options{Seed: 2024, Cuts: *cuts, Interval: 15 * time.Minute, Replay: 24 * time.Hour,
		Scale: *scale, MinImage: 20 << 10, MaxImage: 80 << 10})
	if err != nil {
		return err
	}
	store, err := packager.OpenStore(stateDir)
	if err != nil {
		return err
	}
	db, err := state.Open(statePath(cfg))
	if err != nil {
		return err
	}
	defer db.Close()

	// The difusores: difusor-2 drops its connections in the middle of some
	// cuts, difusor-3 has a thin uplink.
	var servers []*sftpd.Server
	var specs []publisher.TargetSpec
	// The night's clock (set below); the package-mode difusor reads it
	// too, so that its own retention window runs at the night's pace.
	var nightNow func() time.Time
	for i := 1; i <= *difusores; i++ {
		name := fmt.Sprintf("difusor-%d", i)
		www := filepath.Join(dir, "difusores", name, "www")
		if err := os.MkdirAll(www, 0o755); err != nil {
			return err
		}
		var exec sftpd.ExecFunc
		if i == 4 {
			// Package mode: the difusor runs prepcast apply (in-process here,
			// as a command forced in authorized_keys would run it).
			exec = demoApply(ctx, www, key.Public().(ed25519.PublicKey), func() time.Time { return nightNow() })
		}
		srv, err := sftpd.Start(www, filepath.Join(dir, "difusores", name, "id_ed25519"), exec)
		if err != nil {
			return err
		}
		defer srv.Close()
		servers = append(servers, srv)
		tg, err := sftptarget.New(sftptarget.Config{Name: name, Address: srv.Addr, User: srv.User, Root: www,
			IdentityFile: srv.ClientKeyPath, HostKey: srv.HostKeyLine, OpTimeout: 10 * time.Second, Keepalive: 2 * time.Second}, log)
		if err != nil {
			return err
		}
		defer tg.Close()
		spec := publisher.TargetSpec{Target: tg}
		role := ""
		switch i {
		case 2:
			role = " (flaky: drops its connection mid-cut)"
		case 3:
			spec.Limit = 6 << 20
			role = " (thin uplink: 6 MiB/s)"
		case 4:
			spec.Apply = config.DefaultApplyCommand(www)
			role = " (package mode: each cut as one package to prepcast apply)"
		}
		specs = append(specs, spec)
		mode := config.ModeSFTP
		if spec.Apply != "" {
			mode = config.ModeExec
		}
		cfg.Targets = append(cfg.Targets, config.Target{Name: name, Address: srv.Addr, Root: www, Mode: mode, ApplyCommand: spec.Apply})
		fmt.Fprintf(stdout, "%s  sftp://%s@%s%s%s\n", name, srv.User, srv.Addr, www, role)
	}
	fmt.Fprintf(stdout, "replaying %d cuts of the Puebla 2024 PREP night (%.0f%% of the actas) into %s\n\n", *cuts, *scale*100, dir)

	// The night's clock: the time of the latest cut plus the real time since
	// it, accelerated. Acks, retirement and lag all run on it.
	var clockMu sync.Mutex
	clockSpeed := speed
	clockBase, clockReal := night.CutTime(0), time.Now()
	nightNow = func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		return clockBase.Add(time.Duration(float64(time.Since(clockReal)) * clockSpeed))
	}
	setClock := func(t time.Time) {
		clockMu.Lock()
		clockBase, clockReal = t, time.Now()
		clockMu.Unlock()
	}

	eng := &publisher.Engine{Now: nightNow, Store: store, PublicKey: key.Public().(ed25519.PublicKey), DB: db, Log: log, Publisher: "demo",
		Retry: publisher.RetryPolicy{Attempts: 6, Base: 100 * time.Millisecond, Max: time.Second}, CycleTimeout: 5 * time.Minute,
		RetentionWindow: 30 * time.Minute}

	// One pusher per difusor, like independent pushes: each brings its
	// difusor to the latest cut whenever there is a newer one.
	newCut := make([]chan struct{}, len(specs))
	var wg sync.WaitGroup
	pushCtx, stopPush := context.WithCancel(ctx)
	defer func() { stopPush(); wg.Wait() }() // before the servers, state and log close
	quit := make(chan struct{})              // closed when the night is over: pushers finish and leave
	for i, spec := range specs {
		newCut[i] = make(chan struct{}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-pushCtx.Done():
					return
				case <-quit:
					return
				case <-newCut[i]:
				}
				eng.Push(pushCtx, []publisher.TargetSpec{spec})
			}
		}()
	}
	interval := time.Duration(0)
	if speed > 0 {
		interval = time.Duration(float64(15*time.Minute) / speed)
	}
	start := time.Now()
	// On a terminal the status view is redrawn in place as the night goes.
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	var lastCut atomic.Value // string: the line about the latest cut
	lastCut.Store("")
	liveDone := make(chan struct{})
	liveStopped := make(chan struct{})
	if tty {
		go func() {
			defer close(liveStopped)
			for {
				select {
				case <-liveDone:
					return
				case <-time.After(500 * time.Millisecond):
				}
				v, err := statusView(context.Background(), cfg, nightNow(), false)
				if err != nil {
					continue
				}
				var b strings.Builder
				b.WriteString("\x1b[H\x1b[2J")
				fmt.Fprintf(&b, "prepcast demo: the Puebla 2024 PREP night, %d cuts, %d difusores (%s)\n%s\n\n", *cuts, len(specs), dir, lastCut.Load())
				v.WriteTable(&b, zone)
				fmt.Fprint(stdout, b.String())
			}
		}()
	} else {
		close(liveStopped)
	}
	stopLive := func() {
		select {
		case <-liveDone:
		default:
			close(liveDone)
		}
		<-liveStopped
	}
	defer stopLive()
	for k := 0; k < *cuts; k++ {
		tick := time.Now()
		if _, err := night.WriteCutContext(ctx, src, k); err != nil {
			return fmt.Errorf("demo: generate cut %d: %w", k, err)
		}
		cutTime := night.CutTime(k)
		setClock(cutTime)
		res, err := store.Cut(ctx, packager.CutOptions{Source: src, Key: key, Zone: zone, Pointers: cfg.Pointer, Keep: cfg.Retention.Cuts, Log: log, Package: wantsPackages(cfg),
			Protect: protectedSeqs(db), Now: func() time.Time { return cutTime }})
		if err != nil {
			return fmt.Errorf("demo: cut: %w", err)
		}
		for _, ch := range newCut {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		if k%7 == 3 && len(servers) > 1 { // the flaky difusor drops mid-cut
			go func() { time.Sleep(20 * time.Millisecond); servers[1].DropConnections() }()
		}
		if res.NoChange {
			continue
		}
		line := fmt.Sprintf("cut %3d %s  %6d files %9s  delta %4d files %9s   acked:%s", res.Info.Seq, res.Info.ID, res.Info.Files,
			status.FormatBytes(res.Info.Bytes), res.Info.DeltaFiles, status.FormatBytes(res.Info.DeltaBytes), ackLine(db, specs))
		lastCut.Store(line)
		if !tty && (k%8 == 0 || k == *cuts-1) {
			fmt.Fprintln(stdout, line)
		}
		if wait := interval - time.Since(tick); wait > 0 {
			select {
			case <-ctx.Done():
				return errInterrupted
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return errInterrupted
		}
	}
	// The night is over: the clock stops at the last cut while every
	// difusor catches up with it.
	clockMu.Lock()
	clockSpeed = 0
	clockMu.Unlock()
	setClock(night.CutTime(*cuts - 1))
	final := latestSeq(store)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if allAcked(db, specs, final) {
			break
		}
		for _, ch := range newCut {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(quit) // pushes in flight finish; nothing is cut short
	wg.Wait()
	stopLive()
	if tty {
		fmt.Fprint(stdout, "\x1b[H\x1b[2J") // the final table replaces the live view
	}
	if ctx.Err() != nil {
		return errInterrupted
	}
	fmt.Fprintf(stdout, "\nnight replayed in %s\n\n", time.Since(start).Round(100*time.Millisecond))
	v, err := statusView(context.Background(), cfg, nightNow(), false)
	if err != nil {
		return err
	}
	if err := v.WriteTable(stdout, zone); err != nil {
		return err
	}

	// Every webroot must equal the final cut, byte for byte.
	m, _, err := store.Manifest(final)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	bad := 0
	for i, srv := range servers {
		name := specs[i].Target.Name()
		if err := verifyWebroot(srv.Root, m); err != nil {
			bad++
			fmt.Fprintf(stdout, "%s: DIFFERS from cut %d: %v\n", name, final, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: webroot equals cut %d byte for byte (%d files, %s)\n", name, final, m.Files, status.FormatBytes(m.Bytes))
	}
	if *keep {
		fmt.Fprintf(stdout, "\nkept: webroots in %s, store and state in %s, log in %s\n", filepath.Join(dir, "difusores"), stateDir,
			filepath.Join(stateDir, "prepcast.log"))
	} else {
		fmt.Fprintf(stdout, "\n(temporary files removed; run with --keep to look at the webroots, the store and the log)\n")
	}
	if bad > 0 {
		return errFailed
	}
	return nil
}

func protectedSeqs(db *state.DB) map[int64]bool {
	acks, err := db.Acks(context.Background())
	out := map[int64]bool{}
	if err != nil {
		return out
	}
	for _, a := range acks {
		out[a.Seq] = true
	}
	return out
}

func ackLine(db *state.DB, specs []publisher.TargetSpec) string {
	acks, _ := db.Acks(context.Background())
	s := ""
	for _, sp := range specs {
		s += fmt.Sprintf(" %d", acks[sp.Target.Name()].Seq)
	}
	return s
}

func allAcked(db *state.DB, specs []publisher.TargetSpec, seq int64) bool {
	acks, err := db.Acks(context.Background())
	if err != nil {
		return false
	}
	for _, sp := range specs {
		if acks[sp.Target.Name()].Seq != seq {
			return false
		}
	}
	return true
}

// verifyWebroot checks that every file of m is in root with m's SHA-256.
func verifyWebroot(root string, m *packager.Manifest) error {
	for _, e := range m.Entries {
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(e.Path)))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			return fmt.Errorf("%s has other bytes", e.Path)
		}
	}
	return nil
}

// demoApply is the demo's package-mode difusor: "prepcast apply" on its
// webroot, trusting the demo's signing key, on the night's clock.
func demoApply(ctx context.Context, www string, pub ed25519.PublicKey, now func() time.Time) sftpd.ExecFunc {
	return func(_ string, stdin io.Reader, stdout, stderr io.Writer) int {
		if err := applyToRoot(ctx, www, apply.Options{PublicKey: pub, In: stdin, Out: stdout, Now: now}); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
}
