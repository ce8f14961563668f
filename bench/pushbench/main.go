// Command pushbench measures prepcast push against its peers on the same
// Puebla-shaped trees and the same real OpenSSH sshd targets on 127.0.0.1,
// interleaved round-robin (prepcast, then each peer, then again), and prints
// medians, ratios and the push goals as one markdown table and a few notes.
//
// Scenarios:
//
//	full         an empty webroot on one target receives a whole cut (~1 GB by default)
//	incremental  N targets holding cut A receive cut B at once (prepcast: one push;
//	             a peer: N processes in parallel, one per target)
//
// Peers (-peers, default all): rsync -a and rsync -a -W over ssh, rclone copy
// over sftp, lftp mirror -R over sftp and the raw ssh channel, a tar of the
// tree into "cat > /dev/null" (full scenario only). A peer whose tool is not
// installed is skipped with a note.
//
// Every peer uses the cipher prepcast negotiates by default: a probe push to
// a debug-logging sshd finds it, and the measured servers offer only that one.
//
// Client CPU is user+sys of the measured processes and everything they
// waited for (rsync's ssh, for example); server CPU is that of the sshd
// listeners and all they forked. Client peak RSS is the largest resident set
// of any process in a measured process's tree (the rusage of the waited
// child, started by a small wrapper so that the benchmark's own memory does
// not count; see harness.WrapArg), summed over the processes run in parallel.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/prepcast/prepcast/bench/internal/harness"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/resultsgen"
)

// sample is one run of one tool.
type sample struct{ wall, client, server, rssMB float64 }

// row is one tool in one scenario.
type row struct {
	scenario string
	tool     string
	peer     string // the peer's -peers name, "" for prepcast
	pkg      bool   // prepcast in package mode (mode: exec)
	bytes    int64
	runs     []sample
}

// options are the command-line settings.
type options struct {
	out, bin   string
	nTargets   int
	runs       int
	scale      float64
	cutA       int
	rewriteAll bool
	scenarios  []string
	peers      []*peer
	skipped    []string // notes on peers left out
	reproduce  string
	started    time.Time
	partTimes  []string
	cipher     string
	rcloneConf string
}

func main() {
	out := flag.String("out", "/tmp/prepcast-pushbench", "work directory")
	bin := flag.String("prepcast", "bin/prepcast", "prepcast binary")
	nTargets := flag.Int("targets", 10, "targets for the incremental scenario")
	runs := flag.Int("runs", 3, "runs of each tool per scenario")
	scale := flag.Float64("scale", 0.12, "fraction of the night's actas (0.12 is about 1 GB)")
	cutA := flag.Int("cut-a", 24, "cut index of the incremental scenario's starting cut (15-minute cuts from 20:00)")
	scenarios := flag.String("scenarios", "full,incremental", "scenarios to run")
	rewriteAll := flag.Bool("rewrite-all", false, "give every file of the incremental scenario's cut B a new modification time, as a generator that rewrites its whole tree each cut would")
	peers := flag.String("peers", "all", "peers to compare with, comma-separated: "+strings.Join(peerNames(), ",")+" or all")
	if len(os.Args) > 1 && os.Args[1] == harness.WrapArg {
		harness.WrapMain(os.Args[2:])
	}
	flag.Parse()

	o := &options{out: *out, bin: *bin, nTargets: *nTargets, runs: *runs, scale: *scale, cutA: *cutA, rewriteAll: *rewriteAll, started: time.Now()}
	err := o.parse(*scenarios, *peers)
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

// parse checks the flags and resolves the scenarios and peers.
func (o *options) parse(scenarios, peers string) error {
	if o.runs < 1 || o.nTargets < 1 {
		return errors.New("parse flags: -runs and -targets must be at least 1")
	}
	if strings.ContainsAny(o.out, " \t\n'\"\\") {
		return fmt.Errorf("parse flags: work directory %q must not hold spaces, quotes or backslashes: ssh command lines carry it unquoted", o.out)
	}
	for _, sc := range strings.Split(scenarios, ",") {
		if sc != "full" && sc != "incremental" {
			return fmt.Errorf("parse flags: unknown scenario %q: use full, incremental or both", sc)
		}
		o.scenarios = append(o.scenarios, sc)
	}
	want := map[string]bool{}
	for _, name := range strings.Split(peers, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "all":
			for _, p := range allPeers {
				want[p.name] = true
			}
		case name == "" || name == "none":
		case findPeer(name) == nil:
			return fmt.Errorf("parse flags: unknown peer %q: use some of %s, all or none", name, strings.Join(peerNames(), ","))
		default:
			want[name] = true
		}
	}
	for _, p := range allPeers {
		if !want[p.name] {
			continue
		}
		if missing := p.missing(); missing != "" {
			o.skipped = append(o.skipped, fmt.Sprintf("%s skipped: %s is not installed", p.label, missing))
			harness.Say("%s skipped: %s is not installed", p.label, missing)
			continue
		}
		o.peers = append(o.peers, p)
	}
	args := []string{"go run ./bench/pushbench"}
	flag.Visit(func(f *flag.Flag) {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			args = append(args, "-"+f.Name+"="+f.Value.String())
			return
		}
		args = append(args, "-"+f.Name, f.Value.String())
	})
	o.reproduce = strings.Join(args, " ")
	return nil
}

// part records how long a part of the benchmark took since *start and
// restarts the clock.
func (o *options) part(name string, start *time.Time) {
	d := time.Since(*start).Round(time.Second)
	o.partTimes = append(o.partTimes, fmt.Sprintf("%s %s", name, d))
	harness.Say("%s took %s", name, d)
	*start = time.Now()
}

// trees describes the generated trees for the notes.
type trees struct {
	fullFiles, incFiles, incChanged int
	fullBytes, incDelta             int64
	fullCut, cutA, cutB             string
}

func run(o *options) error {
	o.bin, _ = filepath.Abs(o.bin)
	o.out, _ = filepath.Abs(o.out)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	clock := time.Now()
	night, err := resultsgen.New(resultsgen.Options{Seed: 7, Scale: o.scale})
	if err != nil {
		return err
	}
	if o.cutA < 0 || o.cutA+1 >= night.Cuts() {
		return fmt.Errorf("parse flags: -cut-a %d out of range: the night has cuts 0 to %d", o.cutA, night.Cuts()-1)
	}
	treeA, treeB, treeFull := filepath.Join(o.out, "treeA"), filepath.Join(o.out, "treeB"), filepath.Join(o.out, "treeFull")
	harness.Say("generating trees (scale %.2f)", o.scale)
	if _, err := night.WriteCut(treeFull, night.Cuts()-1); err != nil {
		return err
	}
	if _, err := night.WriteCut(treeA, o.cutA); err != nil {
		return err
	}
	// Cut B is written over a copy of cut A the way a PREP generator writes
	// each cut: only changed files are rewritten. Every file carries the
	// time of the cut that last wrote it, so that tools deciding by size and
	// modification time (rsync, rclone, lftp) see the changed files as newer
	// even when cut A and cut B are generated within the same second.
	if err := harness.Stamp(treeA, night.ReplayTime(o.cutA), nil); err != nil {
		return err
	}
	if err := harness.Mirror(treeA, treeB, true); err != nil {
		return err
	}
	if _, err := night.WriteCut(treeB, o.cutA+1); err != nil {
		return err
	}
	changedB, delta := harness.Changed(treeA, treeB)
	only := changedB
	if o.rewriteAll {
		only = nil
	}
	if err := harness.Stamp(treeB, night.ReplayTime(o.cutA+1), only); err != nil {
		return err
	}
	tr := trees{fullCut: night.CutID(night.Cuts() - 1), cutA: night.CutID(o.cutA), cutB: night.CutID(o.cutA + 1)}
	tr.fullFiles, tr.fullBytes = harness.TreeSize(treeFull)
	tr.incFiles, _ = harness.TreeSize(treeB)
	tr.incChanged, tr.incDelta = len(changedB), delta
	keyPath := filepath.Join(o.out, "client_key")
	if _, err := os.Stat(keyPath); err != nil {
		if _, err := sshdtest.GenerateKey(keyPath); err != nil {
			return err
		}
	}
	if err := exec.Command(o.bin, "keygen", "--out", filepath.Join(o.out, "keys")).Run(); err != nil {
		if _, serr := os.Stat(filepath.Join(o.out, "keys", "manifest.key")); serr != nil {
			return fmt.Errorf("keygen: %w", err)
		}
	}
	o.rcloneConf = filepath.Join(o.out, "rclone.conf")
	if err := os.WriteFile(o.rcloneConf, nil, 0o600); err != nil {
		return err
	}
	o.part("generating trees", &clock)

	o.cipher, err = probeCipher(o, night, keyPath)
	if err != nil {
		return err
	}
	harness.Say("prepcast negotiates %s by default; every server offers only that cipher", o.cipher)
	o.part("cipher probe", &clock)

	servers := make([]*sshdtest.Server, o.nTargets)
	for i := range servers {
		dir := filepath.Join(o.out, fmt.Sprintf("t%02d", i+1))
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		s, err := sshdtest.StartServer(dir, sshdtest.Options{ClientKey: keyPath, ExtraConfig: []string{"Ciphers " + o.cipher}})
		if err != nil {
			return err
		}
		defer s.Close()
		servers[i] = s
	}
	var rows []*row
	for _, sc := range o.scenarios {
		var r []*row
		switch sc {
		case "full":
			r, err = full(o, servers[0], treeFull)
		case "incremental":
			r, err = incremental(o, servers, treeA, treeB)
		}
		if err != nil {
			return err
		}
		rows = append(rows, r...)
		o.part(sc+" scenario", &clock)
	}
	printTable(o, rows, tr)
	harness.Say("total %s (%s)", time.Since(o.started).Round(time.Second), strings.Join(o.partTimes, ", "))
	return nil
}

// probeCipher pushes a small cut to an sshd that logs key exchanges and
// returns the client-to-server cipher that prepcast negotiated.
func probeCipher(o *options, night *resultsgen.Night, keyPath string) (string, error) {
	dir := filepath.Join(o.out, "probe")
	tree := filepath.Join(o.out, "treeProbe")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := night.WriteCut(tree, 0); err != nil {
		return "", err
	}
	s, err := sshdtest.StartServer(dir, sshdtest.Options{ClientKey: keyPath, ExtraConfig: []string{"LogLevel DEBUG1"}})
	if err != nil {
		return "", err
	}
	defer s.Close()
	cfg, state, err := writeConfig(o.out, "probe", tree, []*sshdtest.Server{s})
	if err != nil {
		return "", err
	}
	os.RemoveAll(state)
	if err := harness.Sh(o.bin, "cut", "--config", cfg); err != nil {
		return "", err
	}
	if err := harness.Sh(o.bin, "push", "--config", cfg); err != nil {
		return "", err
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`kex: client->server cipher: (\S+)`).FindSubmatch(log)
	if m == nil {
		return "", fmt.Errorf("probe cipher: no key exchange in %s", s.LogPath())
	}
	return string(m[1]), nil
}

// writeConfig writes a prepcast config for src and the servers.
func writeConfig(out, name, src string, servers []*sshdtest.Server) (string, string, error) {
	return writeModeConfig(out, name, name, src, servers, "")
}

// writeModeConfig writes a prepcast config named name whose store is
// state-stateName (configs may share one); with bin set, every target is in
// package mode and runs bin's apply.
func writeModeConfig(out, name, stateName, src string, servers []*sshdtest.Server, bin string) (string, string, error) {
	state := filepath.Join(out, "state-"+stateName)
	var b strings.Builder
	fmt.Fprintf(&b, "source: %s\nstate_dir: %s\nsigning_key: %s\nretention: {cuts: 3}\ntargets:\n", src, state, filepath.Join(out, "keys", "manifest.key"))
	for i, s := range servers {
		mode := ""
		if bin != "" {
			mode = fmt.Sprintf(", mode: exec, apply_command: %q", bin+" apply --root "+s.Root()+" --public-key "+filepath.Join(out, "keys", "manifest.pub"))
		}
		fmt.Fprintf(&b, "  - {name: t%02d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s%s}\n",
			i+1, s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root(), mode)
	}
	p := filepath.Join(out, name+".yaml")
	return p, state, os.WriteFile(p, []byte(b.String()), 0o644)
}

// measure runs cmds in parallel, each through the wrapper, and returns wall
// time, their summed CPU and peak RSS, and the sshd CPU the run caused.
func measure(servers []*sshdtest.Server, cmds ...*exec.Cmd) (sample, error) {
	ws := make([]*harness.Wrapped, len(cmds))
	for i, c := range cmds {
		w, err := harness.Wrap(c)
		if err != nil {
			return sample{}, err
		}
		ws[i] = w
	}
	before := serverCPU(servers)
	start := time.Now()
	use := make([]harness.Usage, len(ws))
	err := harness.InParallel(len(ws), func(i int) (err error) {
		if use[i], err = ws[i].Run(); err != nil {
			err = fmt.Errorf("%s: %w", strings.Join(cmds[i].Args, " "), err)
		}
		return err
	})
	wall := time.Since(start).Seconds()
	if err != nil {
		return sample{}, err
	}
	// sshd reaps its per-connection children shortly after the client leaves.
	time.Sleep(300 * time.Millisecond)
	s := sample{wall: wall, server: serverCPU(servers) - before}
	for _, u := range use {
		s.client += u.CPU
		s.rssMB += float64(u.RSSKB) / 1024
	}
	return s, nil
}

func serverCPU(servers []*sshdtest.Server) float64 {
	var sum float64
	for _, s := range servers {
		c, _ := s.CPUSeconds()
		sum += c
	}
	return sum
}

func emptyDir(d string) error {
	if err := os.RemoveAll(d); err != nil {
		return err
	}
	return os.MkdirAll(d, 0o755)
}

// contender is one tool of a scenario: its row and the commands of one run.
type contender struct {
	row  *row
	cmds func() []*exec.Cmd
}

// rounds runs every contender runs times, round-robin; before each run,
// reset prepares the targets, and after it every target's webroot is
// checked against want (unless the contender is a peer that writes nothing).
func rounds(o *options, name string, servers []*sshdtest.Server, want string, cs []contender, reset func() error) error {
	for r := 1; r <= o.runs; r++ {
		for _, c := range cs {
			harness.Say("%s: run %d/%d: %s", name, r, o.runs, c.row.tool)
			if err := reset(); err != nil {
				return err
			}
			syscall.Sync()
			smp, err := measure(servers, c.cmds()...)
			if err != nil {
				return err
			}
			if p := findPeer(c.row.peer); p == nil || p.writes {
				if err := checkTargets(want, servers); err != nil {
					return fmt.Errorf("%s: %w", c.row.tool, err)
				}
			}
			c.row.runs = append(c.row.runs, smp)
		}
	}
	return nil
}

// checkTargets checks every server's webroot against want, in parallel.
func checkTargets(want string, servers []*sshdtest.Server) error {
	return harness.InParallel(len(servers), func(i int) error {
		if err := harness.SameTree(want, servers[i].WebRoot()); err != nil {
			return fmt.Errorf("target %s: %w", servers[i].Addr(), err)
		}
		return nil
	})
}

func full(o *options, s *sshdtest.Server, tree string) ([]*row, error) {
	cfg, _, err := writeConfig(o.out, "full", tree, []*sshdtest.Server{s})
	if err != nil {
		return nil, err
	}
	if err := harness.Sh(o.bin, "cut", "--config", cfg); err != nil {
		return nil, err
	}
	_, size := harness.TreeSize(tree)
	pkgCfg, _, err := writeModeConfig(o.out, "full-package", "full", tree, []*sshdtest.Server{s}, o.bin)
	if err != nil {
		return nil, err
	}
	const name = "full push, 1 target"
	cs := append(prepcastContenders(o, name, size, cfg, pkgCfg), peerContenders(o, name, size, []*sshdtest.Server{s}, tree, false)...)
	reset := func() error { return emptyDir(s.WebRoot()) }
	if err := rounds(o, "full", []*sshdtest.Server{s}, tree, cs, reset); err != nil {
		return nil, err
	}
	return rowsOf(cs), nil
}

func incremental(o *options, servers []*sshdtest.Server, treeA, treeB string) ([]*row, error) {
	src := filepath.Join(o.out, "treeInc")
	if err := harness.Mirror(treeA, src, true); err != nil {
		return nil, err
	}
	cfg, state, err := writeConfig(o.out, "incremental", src, servers)
	if err != nil {
		return nil, err
	}
	os.RemoveAll(state)
	if err := harness.Sh(o.bin, "cut", "--config", cfg); err != nil {
		return nil, err
	}
	for _, s := range servers {
		if err := emptyDir(s.WebRoot()); err != nil {
			return nil, err
		}
	}
	if err := harness.Sh(o.bin, "push", "--config", cfg); err != nil {
		return nil, err
	}
	// The starting state of every run: what prepcast left on a target after
	// pushing cut A, with cut A's modification times, which a peer that
	// preserves them (rsync -a, rclone, lftp) would have left after pushing
	// cut A itself.
	snap := filepath.Join(o.out, "snapA")
	if err := harness.Mirror(servers[0].WebRoot(), snap, true); err != nil {
		return nil, err
	}
	if err := harness.Mirror(treeA, snap, false); err != nil {
		return nil, err
	}
	if err := harness.Mirror(treeB, src, true); err != nil {
		return nil, err
	}
	if err := harness.Sh(o.bin, "cut", "--config", cfg); err != nil {
		return nil, err
	}
	_, delta := harness.Changed(treeA, treeB)
	if delta == 0 {
		return nil, fmt.Errorf("incremental: cut %d and cut %d hold the same files: choose another -cut-a", o.cutA, o.cutA+1)
	}
	pkgCfg, _, err := writeModeConfig(o.out, "incremental-package", "incremental", src, servers, o.bin)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("incremental cut, %d targets", len(servers))
	total := delta * int64(len(servers))
	cs := append(prepcastContenders(o, name, total, cfg, pkgCfg), peerContenders(o, name, total, servers, treeB, true)...)
	reset := func() error {
		return harness.InParallel(len(servers), func(i int) error { return harness.Mirror(snap, servers[i].WebRoot(), true) })
	}
	if err := rounds(o, "incremental", servers, treeB, cs, reset); err != nil {
		return nil, err
	}
	return rowsOf(cs), nil
}

// prepcastContenders are prepcast's two rows of a scenario: one push with
// the SFTP file-mode config cfg, one with the package-mode config pkgCfg.
func prepcastContenders(o *options, scenario string, bytes int64, cfg, pkgCfg string) []contender {
	push := func(cfg string) func() []*exec.Cmd {
		return func() []*exec.Cmd { return []*exec.Cmd{exec.Command(o.bin, "push", "--config", cfg)} }
	}
	return []contender{
		{row: &row{scenario: scenario, tool: "prepcast push", bytes: bytes}, cmds: push(cfg)},
		{row: &row{scenario: scenario, tool: "prepcast push, package mode", bytes: bytes, pkg: true}, cmds: push(pkgCfg)},
	}
}

// peerContenders are the peers' rows of a scenario: each peer runs one
// process per server, all at once, sending tree; incremental leaves out
// the peers that only run the full push.
func peerContenders(o *options, scenario string, bytes int64, servers []*sshdtest.Server, tree string, incremental bool) []contender {
	var cs []contender
	for _, p := range o.peers {
		if incremental && !p.incremental {
			continue
		}
		tool := p.label
		if len(servers) > 1 {
			tool = fmt.Sprintf("%d × %s", len(servers), p.label)
		}
		cs = append(cs, contender{
			row: &row{scenario: scenario, tool: tool, peer: p.name, bytes: bytes},
			cmds: func() []*exec.Cmd {
				var cmds []*exec.Cmd
				for _, s := range servers {
					cmds = append(cmds, p.cmd(o, s, tree))
				}
				return cmds
			},
		})
	}
	return cs
}

func rowsOf(cs []contender) []*row {
	var rows []*row
	for _, c := range cs {
		rows = append(rows, c.row)
	}
	return rows
}

func med(r *row, f func(sample) float64) float64 {
	var xs []float64
	for _, s := range r.runs {
		xs = append(xs, f(s))
	}
	return harness.Median(xs)
}

func wallOf(s sample) float64 { return s.wall }
func cpuOf(s sample) float64  { return s.client + s.server }
func mbps(r *row) float64     { return float64(r.bytes) / 1e6 / med(r, wallOf) }
