// Command scale measures how "prepcast push" grows with the number of
// difusores: an incremental cut pushed to 1, 10, 30 and 100 targets that
// hold the previous cut of a large tree (50,000 files by default). The
// targets are in-process SFTP servers on 127.0.0.1 in this program; prepcast
// runs as its own process, so its wall time, CPU and peak RSS are its own.
// Every target starts from a hard-linked copy of one pushed webroot, which
// is safe because prepcast only ever replaces files by rename.
package main

import (
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prepcast/prepcast/bench/internal/harness"
	"github.com/prepcast/prepcast/internal/sftpd"
)

func main() {
	out := flag.String("out", "/tmp/prepcast-scale", "work directory")
	bin := flag.String("prepcast", "bin/prepcast", "prepcast binary")
	files := flag.Int("files", 50000, "files in the tree")
	steps := flag.String("targets", "1,10,30,100", "target counts to measure")
	change := flag.Float64("change", 0.01, "fraction of files the incremental cut changes")
	flag.Parse()
	if err := run(*out, *bin, *files, *steps, *change); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// writeTree writes n small JSON files (1–4 KB) and json/main.json; with
// change > 0 it rewrites that fraction of them.
func writeTree(dir string, n int, change float64, seed uint64) (int, error) {
	rng := mrand.New(mrand.NewPCG(seed, 9))
	written := 0
	for i := 0; i < n; i++ {
		if change > 0 && rng.Float64() >= change {
			continue
		}
		p := filepath.Join(dir, fmt.Sprintf("json/e%02d/s%03d/%06d.json", i%7, i%300, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		body := strings.Repeat(fmt.Sprintf(`{"seccion":%d,"votos":%d},`, i, rng.IntN(1000)), 40+rng.IntN(100))
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return written, err
		}
		written++
	}
	return written, os.WriteFile(filepath.Join(dir, "json", "main.json"), []byte(fmt.Sprintf(`{"seed":%d}`, seed)), 0o644)
}

func run(out, bin string, nFiles int, stepsFlag string, change float64) error {
	bin, _ = filepath.Abs(bin)
	var steps []int
	total := 0
	for _, f := range strings.Split(stepsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -targets %q", stepsFlag)
		}
		steps = append(steps, n)
		total += n
	}
	os.RemoveAll(out)
	src := filepath.Join(out, "tree")
	harness.Say("writing %d files", nFiles)
	if _, err := writeTree(src, nFiles, 0, 1); err != nil {
		return err
	}
	if err := harness.Sh(bin, "keygen", "--out", filepath.Join(out, "keys")); err != nil {
		return err
	}
	// One server per target; targets of different steps are disjoint.
	servers := make([]*sftpd.Server, total+1) // [0] is the template
	for i := range servers {
		www := filepath.Join(out, "t", fmt.Sprint(i), "www")
		if err := os.MkdirAll(www, 0o755); err != nil {
			return err
		}
		s, err := sftpd.Start(www, filepath.Join(out, "t", fmt.Sprint(i), "key"), nil)
		if err != nil {
			return err
		}
		defer s.Close()
		servers[i] = s
	}
	config := func(name string, idx []int) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "source: %s\nstate_dir: %s\nsigning_key: %s\nlimits: {targets_in_flight: 32}\ntargets:\n",
			src, filepath.Join(out, "state"), filepath.Join(out, "keys", "manifest.key"))
		for _, i := range idx {
			s := servers[i]
			fmt.Fprintf(&b, "  - {name: t%03d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s}\n",
				i, s.Addr, s.User, s.ClientKeyPath, s.HostKeyLine, s.Root)
		}
		p := filepath.Join(out, name+".yaml")
		return p, os.WriteFile(p, []byte(b.String()), 0o644)
	}
	tmpl, err := config("template", []int{0})
	if err != nil {
		return err
	}
	harness.Say("cut A and push it to the template target")
	if err := harness.Sh(bin, "cut", "--config", tmpl); err != nil {
		return err
	}
	if err := harness.Sh(bin, "push", "--config", tmpl); err != nil {
		return err
	}
	harness.Say("seeding %d targets with hard links", total)
	for i := 1; i <= total; i++ {
		if err := harness.Sh("cp", "-al", servers[0].Root+"/.", servers[i].Root+"/"); err != nil {
			return err
		}
	}
	n, err := writeTree(src, nFiles, change, 2)
	if err != nil {
		return err
	}
	if err := harness.Sh(bin, "cut", "--config", tmpl); err != nil {
		return err
	}
	harness.Say("cut B changes %d files", n)
	fmt.Printf("## prepcast push, scale (%s, %d-file manifest, incremental cut of %d files, in-process SFTP targets on 127.0.0.1)\n\n",
		time.Now().UTC().Format("2006-01-02"), nFiles+1, n+1)
	fmt.Println("| targets | wall s | client CPU s | peak RSS MB | wall s / target | CPU s / target |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|")
	next := 1
	for _, k := range steps {
		var idx []int
		for j := 0; j < k; j++ {
			idx = append(idx, next+j)
		}
		next += k
		cfg, err := config(fmt.Sprintf("n%d", k), idx)
		if err != nil {
			return err
		}
		harness.Say("push to %d targets", k)
		cmd := exec.Command(bin, "push", "--config", cfg)
		start := time.Now()
		outb, err := cmd.CombinedOutput()
		wall := time.Since(start).Seconds()
		if err != nil {
			return fmt.Errorf("push to %d targets: %v\n%s", k, err, outb)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		fmt.Printf("| %d | %.2f | %.2f | %.0f | %.3f | %.3f |\n", k, wall, cpu, float64(ru.Maxrss)/1024, wall/float64(k), cpu/float64(k))
	}
	return nil
}
