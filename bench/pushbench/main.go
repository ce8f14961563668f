// Command pushbench measures prepcast push against rsync on the same
// Puebla-shaped trees and the same real OpenSSH sshd targets on 127.0.0.1,
// interleaved, and prints medians and ratios as a markdown table.
//
// Scenarios:
//
//	full         an empty webroot on one target receives a whole cut (~1 GB by default)
//	incremental  N targets holding cut A receive cut B at once (prepcast: one push;
//	             rsync: N rsync -a processes in parallel)
//
// Client CPU is user+sys of the measured process and everything it waited
// for (rsync's ssh, for example); server CPU is that of the sshd listeners
// and all they forked.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/resultsgen"
)

type sample struct{ wall, client, server float64 }

type row struct {
	scenario, tool string
	bytes          int64
	runs           []sample
}

func main() {
	out := flag.String("out", "/tmp/prepcast-pushbench", "work directory")
	bin := flag.String("prepcast", "bin/prepcast", "prepcast binary")
	nTargets := flag.Int("targets", 10, "targets for the incremental scenario")
	runs := flag.Int("runs", 3, "runs of each tool per scenario")
	scale := flag.Float64("scale", 0.12, "fraction of the night's actas (0.12 is about 1 GB)")
	cutA := flag.Int("cut-a", 24, "cut index of the incremental scenario's starting cut (15-minute cuts from 20:00)")
	scenarios := flag.String("scenarios", "full,incremental", "scenarios to run")
	flag.Parse()
	if err := run(*out, *bin, *nTargets, *runs, *scale, *cutA, *scenarios); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

func say(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

func run(out, bin string, nTargets, runs int, scale float64, cutA int, scenarios string) error {
	bin, _ = filepath.Abs(bin)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	night, err := resultsgen.New(resultsgen.Options{Seed: 7, Scale: scale})
	if err != nil {
		return err
	}
	treeA, treeB, treeFull := filepath.Join(out, "treeA"), filepath.Join(out, "treeB"), filepath.Join(out, "treeFull")
	say("generating trees (scale %.2f)", scale)
	if _, err := night.WriteCut(treeFull, night.Cuts()-1); err != nil {
		return err
	}
	if _, err := night.WriteCut(treeA, cutA); err != nil {
		return err
	}
	if _, err := night.WriteCut(treeB, cutA+1); err != nil {
		return err
	}
	keyPath := filepath.Join(out, "client_key")
	if _, err := os.Stat(keyPath); err != nil {
		if _, err := sshdtest.GenerateKey(keyPath); err != nil {
			return err
		}
	}
	n := max(nTargets, 1)
	servers := make([]*sshdtest.Server, n)
	for i := range servers {
		dir := filepath.Join(out, fmt.Sprintf("t%02d", i+1))
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
		s, err := sshdtest.StartServer(dir, sshdtest.Options{ClientKey: keyPath})
		if err != nil {
			return err
		}
		defer s.Close()
		servers[i] = s
	}
	if err := exec.Command(bin, "keygen", "--out", filepath.Join(out, "keys")).Run(); err != nil {
		if _, serr := os.Stat(filepath.Join(out, "keys", "manifest.key")); serr != nil {
			return fmt.Errorf("keygen: %w", err)
		}
	}
	var rows []*row
	for _, sc := range strings.Split(scenarios, ",") {
		switch sc {
		case "full":
			r, err := full(out, bin, servers[0], treeFull, runs)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		case "incremental":
			r, err := incremental(out, bin, servers[:nTargets], treeA, treeB, runs)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		default:
			return fmt.Errorf("unknown scenario %q", sc)
		}
	}
	printTable(rows, runs)
	return nil
}

// writeConfig writes a prepcast config for src and the servers.
func writeConfig(out, name, src string, servers []*sshdtest.Server) (string, string, error) {
	state := filepath.Join(out, "state-"+name)
	var b strings.Builder
	fmt.Fprintf(&b, "source: %s\nstate_dir: %s\nsigning_key: %s\nretention: {cuts: 3}\ntargets:\n", src, state, filepath.Join(out, "keys", "manifest.key"))
	for i, s := range servers {
		fmt.Fprintf(&b, "  - {name: t%02d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s}\n",
			i+1, s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root())
	}
	p := filepath.Join(out, name+".yaml")
	return p, state, os.WriteFile(p, []byte(b.String()), 0o644)
}

// measure runs cmds in parallel and returns wall time, the summed client
// CPU and the sshd CPU the run caused.
func measure(servers []*sshdtest.Server, cmds ...*exec.Cmd) (sample, error) {
	before := serverCPU(servers)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(cmds))
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			return sample{}, err
		}
	}
	// sshd reaps its per-connection children shortly after the client leaves.
	time.Sleep(300 * time.Millisecond)
	s := sample{wall: wall, server: serverCPU(servers) - before}
	for _, c := range cmds {
		ru := c.ProcessState.SysUsage().(*syscall.Rusage)
		s.client += tv(ru.Utime) + tv(ru.Stime)
	}
	return s, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func serverCPU(servers []*sshdtest.Server) float64 {
	var sum float64
	for _, s := range servers {
		c, _ := s.CPUSeconds()
		sum += c
	}
	return sum
}

func rsyncCmd(s *sshdtest.Server, src string, wholeFile bool) *exec.Cmd {
	args := []string{"-a", "-e", strings.Join(s.SSHArgs(), " ")}
	if wholeFile {
		args = append(args, "-W")
	}
	args = append(args, src+"/", "root@127.0.0.1:"+s.Root()+"/")
	return exec.Command("rsync", args...)
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func treeBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func emptyDir(d string) error {
	if err := os.RemoveAll(d); err != nil {
		return err
	}
	return os.MkdirAll(d, 0o755)
}

func full(out, bin string, s *sshdtest.Server, tree string, runs int) ([]*row, error) {
	cfg, _, err := writeConfig(out, "full", tree, []*sshdtest.Server{s})
	if err != nil {
		return nil, err
	}
	if err := sh(bin, "cut", "--config", cfg); err != nil {
		return nil, err
	}
	size := treeBytes(tree)
	pc := &row{scenario: "full push, 1 target", tool: "prepcast push", bytes: size}
	rs := &row{scenario: "full push, 1 target", tool: "rsync -a", bytes: size}
	for r := 1; r <= runs; r++ {
		say("full: run %d/%d", r, runs)
		for _, t := range []struct {
			row *row
			cmd func() *exec.Cmd
		}{
			{pc, func() *exec.Cmd { return exec.Command(bin, "push", "--config", cfg) }},
			{rs, func() *exec.Cmd { return rsyncCmd(s, tree, false) }},
		} {
			if err := emptyDir(s.WebRoot()); err != nil {
				return nil, err
			}
			syscall.Sync()
			smp, err := measure([]*sshdtest.Server{s}, t.cmd())
			if err != nil {
				return nil, err
			}
			if err := sameTree(tree, s.WebRoot()); err != nil {
				return nil, fmt.Errorf("%s: %w", t.row.tool, err)
			}
			t.row.runs = append(t.row.runs, smp)
		}
	}
	return []*row{pc, rs}, nil
}

func incremental(out, bin string, servers []*sshdtest.Server, treeA, treeB string, runs int) ([]*row, error) {
	src := filepath.Join(out, "treeInc")
	if err := sh("rsync", "-a", "--delete", treeA+"/", src+"/"); err != nil {
		return nil, err
	}
	cfg, _, err := writeConfig(out, "incremental", src, servers)
	if err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(out, "state-incremental"))
	if err := sh(bin, "cut", "--config", cfg); err != nil {
		return nil, err
	}
	for _, s := range servers {
		if err := emptyDir(s.WebRoot()); err != nil {
			return nil, err
		}
	}
	if err := sh(bin, "push", "--config", cfg); err != nil {
		return nil, err
	}
	snap := filepath.Join(out, "snapA")
	if err := sh("rsync", "-a", "--delete", servers[0].WebRoot()+"/", snap+"/"); err != nil {
		return nil, err
	}
	if err := sh("rsync", "-a", "--delete", treeB+"/", src+"/"); err != nil {
		return nil, err
	}
	if err := sh(bin, "cut", "--config", cfg); err != nil {
		return nil, err
	}
	delta := changedBytes(treeA, treeB)
	name := fmt.Sprintf("incremental cut, %d targets", len(servers))
	total := delta * int64(len(servers))
	pc := &row{scenario: name, tool: "prepcast push", bytes: total}
	rs := &row{scenario: name, tool: fmt.Sprintf("%d × rsync -a", len(servers)), bytes: total}
	for r := 1; r <= runs; r++ {
		say("incremental: run %d/%d", r, runs)
		for _, t := range []struct {
			row  *row
			cmds func() []*exec.Cmd
		}{
			{pc, func() []*exec.Cmd { return []*exec.Cmd{exec.Command(bin, "push", "--config", cfg)} }},
			{rs, func() []*exec.Cmd {
				var cs []*exec.Cmd
				for _, s := range servers {
					cs = append(cs, rsyncCmd(s, treeB, false))
				}
				return cs
			}},
		} {
			for _, s := range servers {
				if err := sh("rsync", "-a", "--delete", snap+"/", s.WebRoot()+"/"); err != nil {
					return nil, err
				}
			}
			syscall.Sync()
			smp, err := measure(servers, t.cmds()...)
			if err != nil {
				return nil, err
			}
			for _, s := range servers {
				if err := sameTree(treeB, s.WebRoot()); err != nil {
					return nil, fmt.Errorf("%s: %w", t.row.tool, err)
				}
			}
			t.row.runs = append(t.row.runs, smp)
		}
	}
	return []*row{pc, rs}, nil
}

// changedBytes is the size of the files of b that are new or differ from a.
func changedBytes(a, b string) int64 {
	var n int64
	filepath.Walk(b, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(b, p)
		if !sameFile(p, filepath.Join(a, rel)) {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func sameFile(x, y string) bool {
	bx, err1 := os.ReadFile(x)
	by, err2 := os.ReadFile(y)
	return err1 == nil && err2 == nil && string(bx) == string(by)
}

// sameTree checks that every file of want is in got with the same bytes
// (got may hold more: prepcast's own .prepcast directory, retired files).
func sameTree(want, got string) error {
	return filepath.Walk(want, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		if !sameFile(p, filepath.Join(got, rel)) {
			return fmt.Errorf("%s differs on the target", rel)
		}
		return nil
	})
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func med(r *row, f func(sample) float64) float64 {
	var xs []float64
	for _, s := range r.runs {
		xs = append(xs, f(s))
	}
	return median(xs)
}

func printTable(rows []*row, runs int) {
	fmt.Printf("## prepcast push vs rsync (%s, real sshd on 127.0.0.1, medians of %d runs)\n\n", time.Now().UTC().Format("2006-01-02"), runs)
	fmt.Println("| scenario | tool | wall s | MB/s | client CPU s | server CPU s | wall ratio prepcast/rsync | CPU ratio |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|")
	for i, r := range rows {
		wall := med(r, func(s sample) float64 { return s.wall })
		cpu := med(r, func(s sample) float64 { return s.client + s.server })
		ratio, cratio := "", ""
		if i%2 == 0 && i+1 < len(rows) {
			o := rows[i+1]
			ratio = fmt.Sprintf("%.2f", wall/med(o, func(s sample) float64 { return s.wall }))
			cratio = fmt.Sprintf("%.2f", cpu/med(o, func(s sample) float64 { return s.client + s.server }))
		}
		fmt.Printf("| %s | %s | %.2f | %.0f | %.2f | %.2f | %s | %s |\n", r.scenario, r.tool, wall, float64(r.bytes)/1e6/wall,
			med(r, func(s sample) float64 { return s.client }), med(r, func(s sample) float64 { return s.server }), ratio, cratio)
	}
}
