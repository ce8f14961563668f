// Command wan measures many small files over a WAN-like link: 2,000 JSON
// files of 1–200 KB pushed to one real sshd target through a proxy that adds
// latency and caps bandwidth (integration/faultproxy), against the
// bandwidth-bound ideal (bytes / cap) and, when installed, rclone copy with
// --transfers 8 --sftp-disable-hashcheck.
package main

import (
	"flag"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prepcast/prepcast/bench/internal/harness"
	"github.com/prepcast/prepcast/integration/faultproxy"
	"github.com/prepcast/prepcast/integration/sshdtest"
)

func main() {
	out := flag.String("out", "/tmp/prepcast-wan", "work directory")
	bin := flag.String("prepcast", "bin/prepcast", "prepcast binary")
	files := flag.Int("files", 2000, "JSON files")
	rtt := flag.Duration("rtt", 50*time.Millisecond, "round-trip time added by the link")
	rate := flag.Int64("rate", 12_500_000, "link bandwidth, bytes per second each way")
	inflight := flag.Int("files-in-flight", 64, "prepcast limits.files_in_flight")
	flag.Parse()
	if err := run(*out, *bin, *files, *rtt, *rate, *inflight); err != nil {
		fmt.Fprintln(os.Stderr, "wan:", err)
		os.Exit(1)
	}
}

func run(out, bin string, n int, rtt time.Duration, rate int64, inflight int) error {
	bin, _ = filepath.Abs(bin)
	os.RemoveAll(out)
	src := filepath.Join(out, "tree")
	rng := mrand.New(mrand.NewPCG(3, 3))
	var total int64
	for i := 0; i < n; i++ {
		size := int(math.Exp(math.Log(1<<10) + rng.Float64()*(math.Log(200<<10)-math.Log(1<<10)))) // log-uniform 1–200 KB
		p := filepath.Join(src, "json", fmt.Sprintf("e%02d", i%9), fmt.Sprintf("r%04d.json", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		line := fmt.Sprintf(`{"seccion":%d,"votos":[%d,%d]},`+"\n", i, rng.IntN(900), rng.IntN(900))
		if err := os.WriteFile(p, []byte(strings.Repeat(line, size/len(line)+1)[:size]), 0o644); err != nil {
			return err
		}
		total += int64(size)
	}
	os.WriteFile(filepath.Join(src, "json", "main.json"), []byte(`{"corte":1}`), 0o644)
	s, err := sshdtest.StartServer(filepath.Join(out, "sshd"), sshdtest.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	proxy, err := faultproxy.Start(s.Addr())
	if err != nil {
		return err
	}
	defer proxy.Close()
	proxy.SetLatency(rtt / 2)
	proxy.SetBandwidth(rate)
	if out, err := exec.Command(bin, "keygen", "--out", filepath.Join(out, "keys")).CombinedOutput(); err != nil {
		return fmt.Errorf("keygen: %v %s", err, out)
	}
	cfg := filepath.Join(out, "prepcast.yaml")
	pkgRoot := filepath.Join(out, "www-package-mode")
	if err := os.MkdirAll(pkgRoot, 0o755); err != nil {
		return err
	}
	os.WriteFile(cfg, []byte(fmt.Sprintf("source: %s\nstate_dir: %s\nsigning_key: %s\nlimits: {files_in_flight: %d}\ntargets:\n"+
		"  - {name: wan, address: %q, user: root, identity_file: %s, host_key: %q, root: %s}\n"+
		"  - {name: wan-pkg, address: %q, user: root, identity_file: %s, host_key: %q, root: %s, mode: exec, apply_command: %q}\n",
		src, filepath.Join(out, "state"), filepath.Join(out, "keys", "manifest.key"), inflight,
		proxy.Addr(), s.ClientKeyPath(), s.HostKeyLine(), s.Root(),
		proxy.Addr(), s.ClientKeyPath(), s.HostKeyLine(), pkgRoot, bin+" apply --root "+pkgRoot+" --public-key "+filepath.Join(out, "keys", "manifest.pub"))), 0o644)
	if out, err := exec.Command(bin, "cut", "--config", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("cut: %v %s", err, out)
	}
	ideal := float64(total) / float64(rate)
	fmt.Printf("## many small files over a WAN (%s): %d files, %.1f MB, %v RTT, %.1f MB/s link\n\n", time.Now().UTC().Format("2006-01-02"), n+1, float64(total)/1e6, rtt, float64(rate)/1e6)
	fmt.Println("| tool | wall s | × bandwidth-bound ideal |")
	fmt.Println("|---|---:|---:|")
	fmt.Printf("| ideal (bytes / link rate) | %.2f | 1.00 |\n", ideal)
	start := time.Now()
	if out, err := exec.Command(bin, "push", "--config", cfg, "--target", "wan").CombinedOutput(); err != nil {
		return fmt.Errorf("push: %v %s", err, out)
	}
	pw := time.Since(start).Seconds()
	fmt.Printf("| prepcast push, SFTP file mode (files_in_flight %d) | %.2f | %.2f |\n", inflight, pw, pw/ideal)
	start = time.Now()
	if out, err := exec.Command(bin, "push", "--config", cfg, "--target", "wan-pkg").CombinedOutput(); err != nil {
		return fmt.Errorf("push in package mode: %v %s", err, out)
	}
	pkw := time.Since(start).Seconds()
	fmt.Printf("| prepcast push, package mode (mode: exec) | %.2f | %.2f |\n", pkw, pkw/ideal)
	for _, root := range []string{s.WebRoot(), pkgRoot} {
		if err := harness.SameTree(src, root); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath("rclone"); err == nil {
		dst := filepath.Join(out, "rclone-www")
		os.MkdirAll(dst, 0o755)
		host, port, _ := strings.Cut(proxy.Addr(), ":")
		conf := filepath.Join(out, "rclone.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("[wan]\ntype = sftp\nhost = %s\nport = %s\nuser = root\nkey_file = %s\nknown_hosts_file = %s\ndisable_hashcheck = true\n",
			host, port, s.ClientKeyPath(), writeKnownHosts(out, proxy.Addr(), s.HostKeyLine()))), 0o600)
		start := time.Now()
		cmd := exec.Command("rclone", "--config", conf, "copy", "--transfers", "8", "--sftp-disable-hashcheck", src, "wan:"+dst)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("rclone: %v %s", err, out)
		}
		rw := time.Since(start).Seconds()
		fmt.Printf("| rclone copy --transfers 8 --sftp-disable-hashcheck | %.2f | %.2f |\n", rw, rw/ideal)
		fmt.Printf("\nprepcast / rclone wall time: %.2f (file mode), %.2f (package mode)\n", pw/rw, pkw/rw)
	}
	return nil
}

func writeKnownHosts(dir, addr, key string) string {
	host, port, _ := strings.Cut(addr, ":")
	p := filepath.Join(dir, "known_hosts")
	os.WriteFile(p, []byte(fmt.Sprintf("[%s]:%s %s\n", host, port, key)), 0o600)
	return p
}
