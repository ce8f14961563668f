// Command night measures election night over an emulated WAN: N difusores,
// each a real OpenSSH sshd on 127.0.0.1 behind its own fault proxy with its
// own round-trip time (spread from -rtt-min to -rtt-max), all sharing one
// uplink (integration/faultproxy.Uplink), a few of them slow (their own
// -slow-rate cap) and one stalled (a blackhole). Every difusor starts from
// the same first cut; one Puebla-shaped peak cut follows (new acta images,
// the three CSV databases and the JSON tree rewritten, from resultsgen), and
// each method brings every difusor to it:
//
//	prepcast        prepcast cut + prepcast push, SFTP file mode
//	prepcast-pkg    prepcast cut + prepcast push, package mode (mode: exec, apply --public-key)
//	rsync, rsync-z  N parallel rsync -a / rsync -az over ssh
//	rclone          N parallel rclone copy --transfers 8 --sftp-disable-hashcheck
//	lftp            N parallel lftp mirror -R --parallel=8
//
// For each run: the time from the start (of the cut, for prepcast) to each
// difusor's ack (prepcast: its .prepcast/ack.json rewritten; a peer: its
// process exiting), the median and the last over the healthy difusores,
// bytes through the uplink, the uplink's utilisation over the push (bytes ÷
// (time to the last ack of a difusor that is not stalled × rate)), the share
// of 100 ms windows the uplink was ≥ 90 % busy, and the client CPU (rusage
// of the child processes). Methods are interleaved round-robin; difusores
// are reset to the first cut before every run. With -faults both, every
// method also runs to the healthy difusores alone, so that the cost of the
// slow and stalled ones to the healthy ones is measured.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prepcast/prepcast/bench/internal/harness"
	"github.com/prepcast/prepcast/integration/faultproxy"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/resultsgen"
)

// options are the command-line settings.
type options struct {
	out, bin         string
	n, slow, stall   int
	uplink, slowRate int64
	rttMin, rttMax   time.Duration
	rounds           int
	peerRounds       int // rounds that run rclone and lftp
	scale            float64
	cutA             int
	faults           string
	methods          []*method
	skipped          []string
	reproduce        string
	runTimeout       time.Duration
	verbose          bool
}

// method is one way of bringing every difusor to the new cut.
type method struct {
	name, label string
	needs       []string
	prepcast    bool
	pkg         bool
	slowPeer    bool // runs only -peer-rounds rounds (rclone, lftp: a minute a run here)
	// cmd is a peer's command for difusor i.
	cmd func(b *bench, i int) *exec.Cmd
}

var allMethods = []*method{
	{name: "prepcast", label: "prepcast cut + push, SFTP file mode", prepcast: true},
	{name: "prepcast-pkg", label: "prepcast cut + push, package mode", prepcast: true, pkg: true},
	{name: "rsync", label: "rsync -a", needs: []string{"rsync", "ssh"}, cmd: func(b *bench, i int) *exec.Cmd { return b.rsync(i, false) }},
	{name: "rsync-z", label: "rsync -az", needs: []string{"rsync", "ssh"}, cmd: func(b *bench, i int) *exec.Cmd { return b.rsync(i, true) }},
	{name: "rclone", label: "rclone copy --transfers 8 --sftp-disable-hashcheck", needs: []string{"rclone"}, slowPeer: true, cmd: (*bench).rclone},
	{name: "lftp", label: "lftp mirror -R --parallel=8", needs: []string{"lftp", "ssh"}, slowPeer: true, cmd: (*bench).lftp},
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == harness.WrapArg {
		harness.WrapMain(os.Args[2:])
	}
	o := &options{}
	flag.StringVar(&o.out, "out", "/tmp/prepcast-night", "work directory")
	flag.StringVar(&o.bin, "prepcast", "bin/prepcast", "prepcast binary")
	flag.IntVar(&o.n, "difusores", 10, "difusores")
	flag.IntVar(&o.slow, "slow", 2, "difusores capped at -slow-rate (counted in -difusores)")
	flag.IntVar(&o.stall, "stall", 1, "difusores that stall: a blackhole from the start of each run (counted in -difusores)")
	flag.Int64Var(&o.uplink, "uplink", 50_000_000, "the shared uplink, bytes per second (client to difusores)")
	flag.Int64Var(&o.slowRate, "slow-rate", 5_000_000, "a slow difusor's own downlink, bytes per second")
	flag.DurationVar(&o.rttMin, "rtt-min", 20*time.Millisecond, "shortest round-trip time of a difusor's link")
	flag.DurationVar(&o.rttMax, "rtt-max", 150*time.Millisecond, "longest round-trip time of a difusor's link")
	flag.IntVar(&o.rounds, "rounds", 2, "runs of each method (interleaved)")
	flag.IntVar(&o.peerRounds, "peer-rounds", 1, "of those, the rounds that also run rclone and lftp (the slowest here)")
	flag.Float64Var(&o.scale, "scale", 0.12, "fraction of the night's actas")
	flag.IntVar(&o.cutA, "cut-a", 24, "index of the first cut (15-minute cuts from 20:00); the peak cut is the next one")
	flag.StringVar(&o.faults, "faults", "both", "with (slow and stalled difusores), without (the healthy difusores alone) or both")
	flag.DurationVar(&o.runTimeout, "run-timeout", 3*time.Minute, "longest a run may take")
	flag.BoolVar(&o.verbose, "v", false, "print prepcast push -v's log after each run, on standard error")
	methods := flag.String("methods", "all", "methods, comma-separated: "+strings.Join(methodNames(), ",")+" or all")
	flag.Parse()
	err := o.parse(*methods)
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "night:", err)
		os.Exit(1)
	}
}

func methodNames() []string {
	var names []string
	for _, m := range allMethods {
		names = append(names, m.name)
	}
	return names
}

func (o *options) parse(methods string) error {
	if o.n < 1 || o.rounds < 1 || o.slow < 0 || o.stall < 0 || o.slow+o.stall >= o.n {
		return errors.New("parse flags: need -difusores ≥ 1, -rounds ≥ 1, and at least one healthy difusor besides -slow and -stall")
	}
	if o.faults != "with" && o.faults != "without" && o.faults != "both" {
		return fmt.Errorf("parse flags: -faults %q: use with, without or both", o.faults)
	}
	if strings.ContainsAny(o.out, " \t\n'\"\\") {
		return fmt.Errorf("parse flags: work directory %q must not hold spaces, quotes or backslashes: ssh command lines carry it unquoted", o.out)
	}
	want := map[string]bool{}
	for _, name := range strings.Split(methods, ",") {
		name = strings.TrimSpace(name)
		found := name == "all"
		for _, m := range allMethods {
			if name == "all" || m.name == name {
				want[m.name], found = true, true
			}
		}
		if !found {
			return fmt.Errorf("parse flags: unknown method %q: use some of %s or all", name, strings.Join(methodNames(), ","))
		}
	}
	for _, m := range allMethods {
		if !want[m.name] {
			continue
		}
		missing := ""
		for _, n := range m.needs {
			if _, err := exec.LookPath(n); err != nil && missing == "" {
				missing = n
			}
		}
		if missing != "" {
			o.skipped = append(o.skipped, fmt.Sprintf("%s skipped: %s is not installed", m.label, missing))
			harness.Say("%s skipped: %s is not installed", m.label, missing)
			continue
		}
		o.methods = append(o.methods, m)
	}
	args := []string{"go run ./bench/night"}
	flag.Visit(func(f *flag.Flag) { args = append(args, "-"+f.Name, f.Value.String()) })
	o.reproduce = strings.Join(args, " ")
	return nil
}

// bench is the running benchmark: servers, proxies, trees and configs.
type bench struct {
	o          *options
	servers    []*sshdtest.Server
	proxies    []*faultproxy.Proxy
	uplink     *faultproxy.Uplink
	rtts       []time.Duration
	knownHosts []string
	src        string // the source tree every method sends (prepcast's source)
	snap       string // a difusor's webroot after the first cut, file mode
	snapPkg    string // the same, package mode (apply keeps the signed manifest)
	state      string // prepcast's store
	stateA     string // the store after the first cut
	cfg, pkg   string // prepcast configs: file mode, package mode
	deltaBytes int64  // bytes of the files the peak cut changes, per difusor
	deltaFiles int
	files      int
	rcloneConf string
	srv        *serverCPU // the difusores' CPU; nil where it cannot be measured
}

// role of difusor i: slow difusores come last before the stalled ones.
func (b *bench) slow(i int) bool    { return i >= b.o.n-b.o.stall-b.o.slow && i < b.o.n-b.o.stall }
func (b *bench) stalled(i int) bool { return i >= b.o.n-b.o.stall }
func (b *bench) healthy(i int) bool { return !b.slow(i) && !b.stalled(i) }

func run(o *options) error {
	o.bin, _ = filepath.Abs(o.bin)
	o.out, _ = filepath.Abs(o.out)
	started := time.Now()
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	b := &bench{o: o, src: filepath.Join(o.out, "source"), snap: filepath.Join(o.out, "snapA"), snapPkg: filepath.Join(o.out, "snapA-package"),
		state: filepath.Join(o.out, "state"), stateA: filepath.Join(o.out, "stateA"), rcloneConf: filepath.Join(o.out, "rclone.conf")}
	treeA, treeB := filepath.Join(o.out, "treeA"), filepath.Join(o.out, "treeB")
	if err := b.trees(treeA, treeB); err != nil {
		return err
	}
	if err := b.start(); err != nil {
		return err
	}
	defer b.close()
	if err := b.firstCut(treeA, treeB); err != nil {
		return err
	}
	harness.Say("setup took %s; peak cut: %d changed files, %.1f MiB per difusor", time.Since(started).Round(time.Second), b.deltaFiles, float64(b.deltaBytes)/(1<<20))
	var configs []bool // with faults
	switch o.faults {
	case "with":
		configs = []bool{true}
	case "without":
		configs = []bool{false}
	default:
		configs = []bool{true, false}
	}
	results := map[string][]sample{}
	for r := 1; r <= o.rounds; r++ {
		for _, faults := range configs {
			for _, m := range o.methods {
				if m.slowPeer && r > o.peerRounds {
					continue
				}
				harness.Say("round %d/%d, %s, %s", r, o.rounds, faultName(faults), m.label)
				s, err := b.runOnce(m, faults)
				if err != nil {
					return fmt.Errorf("%s (%s): %w", m.label, faultName(faults), err)
				}
				harness.Say("  last healthy ack %.2f s, uplink %.0f MB, utilisation %.0f %%, client CPU %.1f s", s.lastHealthy, float64(s.upBytes)/1e6, 100*s.util, s.cpu)
				k := key(m, faults)
				results[k] = append(results[k], s)
			}
		}
	}
	b.report(configs, results, time.Since(started))
	return nil
}

func faultName(faults bool) string {
	if faults {
		return "with slow and stalled difusores"
	}
	return "healthy difusores only (the slow and stalled ones left out)"
}

func key(m *method, faults bool) string { return fmt.Sprintf("%s/%v", m.name, faults) }

// trees writes the first cut (treeA) and the peak cut (treeB) the way a
// PREP generator writes each cut: only changed files are rewritten, and
// every file carries the time of the cut that last wrote it.
func (b *bench) trees(treeA, treeB string) error {
	night, err := resultsgen.New(resultsgen.Options{Seed: 7, Scale: b.o.scale, MinImage: 200 << 10, MaxImage: 400 << 10})
	if err != nil {
		return err
	}
	if b.o.cutA < 0 || b.o.cutA+1 >= night.Cuts() {
		return fmt.Errorf("parse flags: -cut-a %d out of range: the night has cuts 0 to %d", b.o.cutA, night.Cuts()-1)
	}
	harness.Say("generating the first cut and the peak cut (scale %.2f)", b.o.scale)
	for _, d := range []string{treeA, treeB} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if _, err := night.WriteCut(treeA, b.o.cutA); err != nil {
		return err
	}
	if err := harness.Stamp(treeA, night.ReplayTime(b.o.cutA), nil); err != nil {
		return err
	}
	if err := harness.Mirror(treeA, treeB, true); err != nil {
		return err
	}
	if _, err := night.WriteCut(treeB, b.o.cutA+1); err != nil {
		return err
	}
	changed, delta := harness.Changed(treeA, treeB)
	if delta == 0 {
		return fmt.Errorf("cuts %d and %d hold the same files: choose another -cut-a", b.o.cutA, b.o.cutA+1)
	}
	b.deltaFiles, b.deltaBytes = len(changed), delta
	b.files, _ = harness.TreeSize(treeB)
	return harness.Stamp(treeB, night.ReplayTime(b.o.cutA+1), changed)
}

// start starts the difusores' sshd and their proxies, with no fault yet.
func (b *bench) start() error {
	o := b.o
	keyPath := filepath.Join(o.out, "client_key")
	if _, err := os.Stat(keyPath); err != nil {
		if _, err := sshdtest.GenerateKey(keyPath); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(o.out, "keys")); err != nil {
		return err
	}
	if err := harness.Sh(o.bin, "keygen", "--out", filepath.Join(o.out, "keys")); err != nil {
		return err
	}
	if err := os.WriteFile(b.rcloneConf, nil, 0o600); err != nil {
		return err
	}
	b.uplink = faultproxy.NewUplink(o.uplink)
	for i := range o.n {
		dir := filepath.Join(o.out, fmt.Sprintf("d%02d", i+1))
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		s, err := sshdtest.StartServer(dir, sshdtest.Options{ClientKey: keyPath})
		if err != nil {
			return err
		}
		b.servers = append(b.servers, s)
		p, err := faultproxy.Start(s.Addr())
		if err != nil {
			return err
		}
		b.proxies = append(b.proxies, p)
		rtt := o.rttMin
		if o.n > 1 {
			rtt += (o.rttMax - o.rttMin) * time.Duration(i) / time.Duration(o.n-1)
		}
		b.rtts = append(b.rtts, rtt)
		kh := filepath.Join(o.out, fmt.Sprintf("known_hosts_d%02d", i+1))
		if err := os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", proxyPort(p), s.HostKeyLine())), 0o600); err != nil {
			return err
		}
		b.knownHosts = append(b.knownHosts, kh)
	}
	var pids []int
	for _, s := range b.servers {
		pids = append(pids, s.PID())
	}
	var err error
	if b.srv, err = newServerCPU(pids); err != nil {
		harness.Say("the difusores' CPU is not measured: %v", err)
	}
	return nil
}

func (b *bench) close() {
	for _, p := range b.proxies {
		p.Close()
	}
	for _, s := range b.servers {
		s.Close()
	}
	b.srv.close()
}

func proxyPort(p *faultproxy.Proxy) int {
	_, port, _ := strings.Cut(p.Addr(), ":")
	n, _ := strconv.Atoi(port)
	return n
}

// setFaults sets every proxy's link: its RTT and the shared uplink; with
// faults, the slow difusores' own cap and the stalled ones' blackhole.
func (b *bench) setFaults(faults bool) {
	for i, p := range b.proxies {
		p.SetLatency(b.rtts[i] / 2)
		p.Blackhole(faults && b.stalled(i))
		if faults && b.slow(i) {
			p.SetUplinks(b.uplink, faultproxy.NewUplink(b.o.slowRate))
		} else {
			p.SetUplinks(b.uplink)
		}
	}
}

// clearFaults lets every link run free (used to set the difusores up).
func (b *bench) clearFaults() {
	for _, p := range b.proxies {
		p.SetLatency(0)
		p.Blackhole(false)
		p.SetUplinks()
	}
}

// firstCut cuts and pushes the first cut to every difusor, keeps a copy of
// a difusor's webroot and of prepcast's store, and puts the peak cut in the
// source (not yet cut).
func (b *bench) firstCut(treeA, treeB string) error {
	o := b.o
	var err error
	if b.cfg, err = b.writeConfig("night", false); err != nil {
		return err
	}
	if b.pkg, err = b.writeConfig("night-package", true); err != nil {
		return err
	}
	for _, d := range []string{b.src, b.state, b.stateA, b.snap, b.snapPkg} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := harness.Mirror(treeA, b.src, true); err != nil {
		return err
	}
	harness.Say("bringing %d difusores to the first cut", o.n)
	b.clearFaults()
	if err := harness.Sh(o.bin, "cut", "--config", b.cfg); err != nil {
		return err
	}
	if err := harness.Sh(o.bin, "push", "--config", b.cfg); err != nil {
		return err
	}
	// What prepcast left on a difusor, with the first cut's modification
	// times, which rsync -a, rclone and lftp would have left too.
	if err := harness.Mirror(b.servers[0].WebRoot(), b.snap, true); err != nil {
		return err
	}
	if err := harness.Mirror(treeA, b.snap, false); err != nil {
		return err
	}
	// What package mode leaves: the first cut applied to an empty webroot.
	d1 := b.servers[0].WebRoot()
	if err := os.RemoveAll(d1); err != nil {
		return err
	}
	if err := os.MkdirAll(d1, 0o755); err != nil {
		return err
	}
	if err := harness.Sh(o.bin, "push", "--config", b.pkg, "--target", "d01"); err != nil {
		return err
	}
	if err := harness.Mirror(d1, b.snapPkg, true); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(b.snapPkg, ".prepcast", "held", "state.json")); err != nil {
		return fmt.Errorf("package mode left no signed manifest on the difusor: %w", err)
	}
	if err := harness.Mirror(b.snap, d1, true); err != nil {
		return err
	}
	if err := harness.Sh("cp", "-a", b.state, b.stateA); err != nil {
		return err
	}
	return harness.Mirror(treeB, b.src, true)
}

// writeConfig writes a prepcast config whose targets are the difusores
// through their proxies, in package mode with pkg.
func (b *bench) writeConfig(name string, pkg bool) (string, error) {
	var s strings.Builder
	fmt.Fprintf(&s, "source: %s\nstate_dir: %s\nsigning_key: %s\nretention: {cuts: 3}\ntargets:\n", b.src, b.state, filepath.Join(b.o.out, "keys", "manifest.key"))
	for i, srv := range b.servers {
		mode := ""
		if pkg {
			mode = fmt.Sprintf(", mode: exec, apply_command: %q", b.o.bin+" apply --root "+srv.Root()+" --public-key "+filepath.Join(b.o.out, "keys", "manifest.pub"))
		}
		fmt.Fprintf(&s, "  - {name: d%02d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s%s}\n",
			i+1, b.proxies[i].Addr(), srv.User(), srv.ClientKeyPath(), srv.HostKeyLine(), srv.Root(), mode)
	}
	p := filepath.Join(b.o.out, name+".yaml")
	return p, os.WriteFile(p, []byte(s.String()), 0o644)
}

// reset brings every difusor back to the first cut as method m would have
// left it, and prepcast's store back to its state after the first cut.
func (b *bench) reset(m *method) error {
	snap := b.snap
	if m.pkg {
		snap = b.snapPkg
	}
	if err := os.RemoveAll(b.state); err != nil {
		return err
	}
	if err := harness.Sh("cp", "-a", b.stateA, b.state); err != nil {
		return err
	}
	return harness.InParallel(len(b.servers), func(i int) error { return harness.Mirror(snap, b.servers[i].WebRoot(), true) })
}

// sshArgs is the OpenSSH client command line for difusor i through its proxy.
func (b *bench) sshArgs(i int) []string {
	args := b.servers[i].SSHArgs()
	for j := range args {
		switch {
		case j > 0 && args[j-1] == "-p":
			args[j] = strconv.Itoa(proxyPort(b.proxies[i]))
		case strings.HasPrefix(args[j], "UserKnownHostsFile="):
			args[j] = "UserKnownHostsFile=" + b.knownHosts[i]
		}
	}
	return args
}

func (b *bench) rsync(i int, z bool) *exec.Cmd {
	flags := "-a"
	if z {
		flags = "-az"
	}
	s := b.servers[i]
	return exec.Command("rsync", flags, "-e", strings.Join(b.sshArgs(i), " "), b.src+"/", s.User()+"@127.0.0.1:"+s.Root()+"/")
}

func (b *bench) rclone(i int) *exec.Cmd {
	s := b.servers[i]
	return exec.Command("rclone", "copy", "-q", "--config", b.rcloneConf,
		"--transfers", "8", "--sftp-disable-hashcheck",
		"--sftp-host", "127.0.0.1", "--sftp-port", strconv.Itoa(proxyPort(b.proxies[i])), "--sftp-user", s.User(),
		"--sftp-key-file", s.ClientKeyPath(), "--sftp-known-hosts-file", b.knownHosts[i],
		b.src, ":sftp:"+s.Root())
}

func (b *bench) lftp(i int) *exec.Cmd {
	s := b.servers[i]
	script := fmt.Sprintf(`set cmd:fail-exit yes; set net:max-retries 1; set sftp:connect-program "%s"; `+
		`open -u %s, -p %d sftp://127.0.0.1; mirror -R --parallel=8 %s %s`,
		strings.Join(b.sshArgs(i), " "), s.User(), proxyPort(b.proxies[i]), b.src, s.Root())
	return exec.Command("lftp", "-c", script)
}

// sample is one run of one method.
type sample struct {
	cut         float64   // prepcast's cut, seconds
	acks        []float64 // seconds from the start to each difusor's ack (0: none)
	medHealthy  float64
	lastHealthy float64
	lastAny     float64   // last ack of a difusor that is not stalled
	upBytes     int64     // through the uplink
	downBytes   int64     // back from the difusores
	util        float64   // upBytes ÷ ((lastAny − push start) × rate)
	busy        float64   // share of 100 ms windows, push start to lastAny, the uplink was ≥ 90 % busy
	profile     []float64 // the uplink's use (share of its rate) per profileStep, push start to lastAny
	cpu         float64   // client CPU seconds, all processes
	srvCPU      float64   // the difusores' CPU seconds (sshd and what it runs), all of them
	rssMB       float64   // peak RSS: largest prepcast process, or the sum over a peer's processes
}

// runOnce resets the difusors, sets the links and runs m once.
func (b *bench) runOnce(m *method, faults bool) (sample, error) {
	b.clearFaults()
	if err := b.reset(m); err != nil {
		return sample{}, err
	}
	syscall.Sync()
	b.setFaults(faults)
	defer b.clearFaults()
	acks := make([]time.Time, b.o.n)
	var mu sync.Mutex
	ack := func(i int, t time.Time) {
		mu.Lock()
		if acks[i].IsZero() {
			acks[i] = t
		}
		mu.Unlock()
	}
	// Without faults, only the healthy difusores take part.
	active := func(i int) bool { return faults || b.healthy(i) }
	// done reports whether every difusor that takes part and is not
	// stalled has acked.
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i, t := range acks {
			if t.IsZero() && active(i) && !(faults && b.stalled(i)) {
				return false
			}
		}
		return true
	}
	up0, down0, srv0 := b.uplink.Bytes(), b.down(), b.srv.now()
	trace := newTrace(b.uplink)
	defer trace.stop()
	var s sample
	start := time.Now()
	pushStart := start
	deadline := time.After(b.o.runTimeout)
	var use []harness.Usage
	if m.prepcast {
		cfg := b.cfg
		if m.pkg {
			cfg = b.pkg
		}
		cut, err := harness.Wrap(exec.Command(b.o.bin, "cut", "--config", cfg))
		if err != nil {
			return s, err
		}
		u, err := cut.Run()
		if err != nil {
			return s, fmt.Errorf("cut: %w", err)
		}
		use = append(use, u)
		pushStart = time.Now()
		s.cut = pushStart.Sub(start).Seconds()
		trace.reset()
		up0 = b.uplink.Bytes()
		before := make([][]byte, b.o.n)
		for i, srv := range b.servers {
			before[i], _ = os.ReadFile(ackPath(srv))
		}
		args := []string{"push", "--config", cfg}
		for i := range b.o.n {
			if !faults && active(i) {
				args = append(args, "--target", fmt.Sprintf("d%02d", i+1))
			}
		}
		if b.o.verbose {
			args = append(args, "-v")
		}
		push, err := harness.Wrap(exec.Command(b.o.bin, args...))
		if err != nil {
			return s, err
		}
		if err := push.Start(); err != nil {
			return s, err
		}
		exited := make(chan struct{})
		var perr error
		var pu harness.Usage
		go func() { pu, perr = push.Wait(); close(exited) }()
		tick := time.NewTicker(10 * time.Millisecond)
	poll:
		for {
			select {
			case <-tick.C:
			case <-exited:
			case <-deadline:
				push.Stop()
				<-exited
				return s, fmt.Errorf("no ack from every difusor within %v", b.o.runTimeout)
			}
			now := time.Now()
			for i, srv := range b.servers {
				if data, err := os.ReadFile(ackPath(srv)); err == nil && !bytes.Equal(data, before[i]) {
					ack(i, now)
				}
			}
			select {
			case <-exited:
				break poll
			default:
			}
			if faults && b.o.stall > 0 && done() {
				// Only stalled difusores are left: a second interrupt
				// stops at once.
				push.Stop()
				time.Sleep(200 * time.Millisecond)
				push.Stop()
				<-exited
				break poll
			}
		}
		tick.Stop()
		if b.o.verbose {
			os.Stderr.Write(push.Output())
		}
		if perr != nil && !(faults && b.o.stall > 0) {
			return s, fmt.Errorf("push: %w", perr)
		}
		if !done() {
			return s, fmt.Errorf("push ended before every difusor acked: %v\n%s", perr, push.Output())
		}
		use = append(use, pu)
	} else {
		ws := make([]*harness.Wrapped, b.o.n)
		for i := range ws {
			if !active(i) {
				continue
			}
			w, err := harness.Wrap(m.cmd(b, i))
			if err != nil {
				return s, err
			}
			ws[i] = w
		}
		use = make([]harness.Usage, b.o.n)
		errs := make([]error, b.o.n)
		var wg sync.WaitGroup
		for i, w := range ws {
			if w == nil {
				continue
			}
			if err := w.Start(); err != nil {
				return s, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				use[i], errs[i] = w.Wait()
				if errs[i] == nil {
					ack(i, time.Now())
				}
			}()
		}
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		tick := time.NewTicker(10 * time.Millisecond)
	wait:
		for {
			select {
			case <-finished:
				break wait
			case <-deadline:
				for _, w := range ws {
					if w != nil {
						w.Stop()
					}
				}
				<-finished
				return s, fmt.Errorf("not done within %v", b.o.runTimeout)
			case <-tick.C:
				if done() {
					for i, w := range ws {
						if faults && b.stalled(i) {
							w.Stop()
						}
					}
				}
			}
		}
		tick.Stop()
		for i, err := range errs {
			if err != nil && !(faults && b.stalled(i)) {
				return s, fmt.Errorf("difusor d%02d: %w", i+1, err)
			}
		}
	}
	var healthy []float64
	for i, t := range acks {
		if t.IsZero() {
			s.acks = append(s.acks, 0)
			continue
		}
		d := t.Sub(start).Seconds()
		s.acks = append(s.acks, d)
		if b.healthy(i) {
			healthy = append(healthy, d)
		}
		s.lastAny = max(s.lastAny, d)
	}
	s.medHealthy = harness.Median(healthy)
	for _, d := range healthy {
		s.lastHealthy = max(s.lastHealthy, d)
	}
	s.upBytes, s.downBytes = b.uplink.Bytes()-up0, b.down()-down0
	s.srvCPU = (b.srv.now() - srv0).Seconds()
	pushTime := s.lastAny - pushStart.Sub(start).Seconds()
	s.util = float64(s.upBytes) / (pushTime * float64(b.o.uplink))
	pushEnd := pushStart.Add(time.Duration(pushTime * float64(time.Second)))
	s.busy = trace.busyShare(pushEnd, 0.9)
	s.profile = trace.profile(pushEnd, profileStep)
	for _, u := range use {
		s.cpu += u.CPU
		if m.prepcast {
			s.rssMB = max(s.rssMB, float64(u.RSSKB)/1024)
		} else {
			s.rssMB += float64(u.RSSKB) / 1024
		}
	}
	// Every difusor that acked holds the peak cut byte for byte.
	err := harness.InParallel(b.o.n, func(i int) error {
		if !active(i) || faults && b.stalled(i) {
			return nil
		}
		return harness.SameTree(b.src, b.servers[i].WebRoot())
	})
	return s, err
}

func ackPath(s *sshdtest.Server) string { return filepath.Join(s.WebRoot(), ".prepcast", "ack.json") }

func (b *bench) down() int64 {
	var n int64
	for _, p := range b.proxies {
		n += p.Stats().BytesDown
	}
	return n
}

// trace samples the uplink's byte count every 100 ms.
type trace struct {
	u    *faultproxy.Uplink
	mu   sync.Mutex
	at   []time.Time
	n    []int64
	quit chan struct{}
	wg   sync.WaitGroup
}

const traceStep = 100 * time.Millisecond

func newTrace(u *faultproxy.Uplink) *trace {
	t := &trace{u: u, quit: make(chan struct{})}
	t.reset()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(traceStep)
		defer tick.Stop()
		for {
			select {
			case <-t.quit:
				return
			case now := <-tick.C:
				t.mu.Lock()
				t.at, t.n = append(t.at, now), append(t.n, u.Bytes())
				t.mu.Unlock()
			}
		}
	}()
	return t
}

// reset starts the trace again from now.
func (t *trace) reset() {
	t.mu.Lock()
	t.at, t.n = []time.Time{time.Now()}, []int64{t.u.Bytes()}
	t.mu.Unlock()
}

func (t *trace) stop() { close(t.quit); t.wg.Wait() }

// busyShare is the share of the trace's windows up to end in which the
// uplink carried at least frac of its rate.
func (t *trace) busyShare(end time.Time, frac float64) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var windows, busy int
	for k := 1; k < len(t.at) && !t.at[k].After(end); k++ {
		windows++
		rate := float64(t.n[k]-t.n[k-1]) / t.at[k].Sub(t.at[k-1]).Seconds()
		if rate >= frac*float64(t.u.Rate()) {
			busy++
		}
	}
	if windows == 0 {
		return 0
	}
	return float64(busy) / float64(windows)
}

// profileStep is the step of the uplink's profile in the report.
const profileStep = 500 * time.Millisecond

// profile is the uplink's use, as a share of its rate, in each step of
// the trace up to end (the last step may be shorter).
func (t *trace) profile(end time.Time, step time.Duration) []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.at)
	for n > 1 && t.at[n-1].After(end) {
		n--
	}
	if n < len(t.at) {
		n++ // the sample that covers end
	}
	var out []float64
	k0 := 0
	for k := 1; k < n; k++ {
		if t.at[k].Sub(t.at[k0]) < step && k < n-1 {
			continue
		}
		rate := float64(t.n[k]-t.n[k0]) / t.at[k].Sub(t.at[k0]).Seconds()
		out = append(out, rate/float64(t.u.Rate()))
		k0 = k
	}
	return out
}

func medianOf(ss []sample, f func(sample) float64) float64 {
	var xs []float64
	for _, s := range ss {
		xs = append(xs, f(s))
	}
	return harness.Median(xs)
}

func (b *bench) report(configs []bool, results map[string][]sample, took time.Duration) {
	o := b.o
	healthyN := o.n - o.slow - o.stall
	fmt.Printf("## Election night over an emulated WAN (%s): %d difusores, %.0f MB/s shared uplink\n\n", time.Now().UTC().Format("2006-01-02"), o.n, float64(o.uplink)/1e6)
	fmt.Printf("Peak cut: %d changed files of %d, %.1f MiB per difusor (resultsgen seed 7, scale %.2f, cut %d to %d). "+
		"RTTs %v–%v spread over the difusores; with faults, %d slow (%.0f MB/s own cap) and %d stalled (blackhole), %d healthy. "+
		"Medians of %d interleaved rounds (rclone and lftp: %d); times from the start of the cut (prepcast) or of the processes (peers) to each difusor's ack.\n\n",
		b.deltaFiles, b.files, float64(b.deltaBytes)/(1<<20), o.scale, o.cutA, o.cutA+1, o.rttMin, o.rttMax, o.slow, float64(o.slowRate)/1e6, o.stall, healthyN, o.rounds, min(o.peerRounds, o.rounds))
	for _, faults := range configs {
		receivers := o.n - o.stall
		if !faults {
			receivers = healthyN
		}
		bound := float64(receivers) * float64(b.deltaBytes) / float64(o.uplink)
		best, bestName := 0.0, ""
		for _, m := range o.methods {
			if m.name == "rsync" || m.name == "rsync-z" {
				if v := medianOf(results[key(m, faults)], func(s sample) float64 { return s.lastHealthy }); bestName == "" || v < best {
					best, bestName = v, m.label
				}
			}
		}
		fmt.Printf("### %s (uplink bound: %d × %.1f MiB ÷ %.0f MB/s = %.2f s)\n\n", faultName(faults), receivers, float64(b.deltaBytes)/(1<<20), float64(o.uplink)/1e6, bound)
		fmt.Println("| method | cut s | median healthy ack s | last healthy ack s | last ack s (not stalled) | × bound | × best rsync | uplink MB | uplink use | windows ≥ 90 % | client CPU s | CPU s per difusor | difusores' CPU s | peak RSS MB |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, m := range o.methods {
			ss := results[key(m, faults)]
			last := medianOf(ss, func(s sample) float64 { return s.lastHealthy })
			cut := medianOf(ss, func(s sample) float64 { return s.cut })
			vsBest := "–"
			if bestName != "" {
				vsBest = fmt.Sprintf("%.2f", last/best)
			}
			xBound := fmt.Sprintf("%.2f", last/bound)
			if m.prepcast {
				xBound = fmt.Sprintf("%.2f (%.2f with the cut)", (last-cut)/bound, last/(bound+cut))
			}
			cpu := medianOf(ss, func(s sample) float64 { return s.cpu })
			srvCPU := "–"
			if b.srv != nil {
				srvCPU = fmt.Sprintf("%.1f", medianOf(ss, func(s sample) float64 { return s.srvCPU }))
			}
			fmt.Printf("| %s | %s | %.2f | %.2f | %.2f | %s | %s | %.0f | %.0f %% | %.0f %% | %.1f | %.2f | %s | %.0f |\n",
				m.label, orDash(cut), medianOf(ss, func(s sample) float64 { return s.medHealthy }), last,
				medianOf(ss, func(s sample) float64 { return s.lastAny }), xBound, vsBest,
				medianOf(ss, func(s sample) float64 { return float64(s.upBytes) / 1e6 }),
				100*medianOf(ss, func(s sample) float64 { return s.util }), 100*medianOf(ss, func(s sample) float64 { return s.busy }),
				cpu, cpu/float64(receivers), srvCPU, medianOf(ss, func(s sample) float64 { return s.rssMB }))
		}
		if bestName != "" {
			fmt.Printf("\nBest rsync variant: %s (%.2f s to the last healthy ack).\n", bestName, best)
		}
		fmt.Println()
	}
	if len(configs) == 2 {
		fmt.Println("### Cost of the slow and stalled difusores to the healthy ones (last healthy ack, with ÷ without)")
		fmt.Println()
		fmt.Println("| method | with s | without s | cost |")
		fmt.Println("|---|---:|---:|---:|")
		for _, m := range o.methods {
			w := medianOf(results[key(m, true)], func(s sample) float64 { return s.lastHealthy })
			wo := medianOf(results[key(m, false)], func(s sample) float64 { return s.lastHealthy })
			fmt.Printf("| %s | %.2f | %.2f | %+.0f %% |\n", m.label, w, wo, 100*(w/wo-1))
		}
		fmt.Println()
	}
	fmt.Printf("Per-run acks (seconds; 0 = none):\n\n")
	keys := make([]string, 0, len(results))
	for k := range results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for r, s := range results[k] {
			var xs []string
			for _, a := range s.acks {
				xs = append(xs, fmt.Sprintf("%.1f", a))
			}
			fmt.Printf("- %s run %d: %s\n", k, r+1, strings.Join(xs, " "))
		}
	}
	fmt.Printf("\nUplink use over time, first run of each (%% of %.0f MB/s per %v, from the push's start to the last ack not stalled):\n\n", float64(o.uplink)/1e6, profileStep)
	for _, k := range keys {
		ss := results[k]
		if len(ss) == 0 {
			continue
		}
		var xs []string
		for _, u := range ss[0].profile {
			xs = append(xs, fmt.Sprintf("%.0f", 100*u))
		}
		fmt.Printf("- %s: %s\n", k, strings.Join(xs, " "))
	}
	fmt.Println()
	for _, n := range o.skipped {
		fmt.Println("- " + n)
	}
	fmt.Printf("Reproduce: `make build && %s` (%s here, setup included).\n", o.reproduce, took.Round(time.Second))
}

func orDash(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}
