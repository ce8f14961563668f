// Command filedelta measures staging changed files from ranges of the
// versions the difusores serve (OpenSSH's copy-data) against sending them
// whole and against rsync -a, and package mode (the file as a zstd delta
// against the difusor's version, decoded by "prepcast apply") against
// rsync -az, on the real IEE Puebla 2024 governor
// database (18:00 cut, then the 20:00 cut) pushed to N difusores, each
// reached through its own WAN-like link (integration/faultproxy: latency,
// and the uplink's bandwidth shared out evenly) to one real sshd.
//
// For each tool the 18:00 cut is first brought to every difusor (not
// timed), then the 20:00 cut is timed: wall time until every difusor holds
// it, bytes on the wire in both directions (proxy counts), literal bytes
// (prepcast's plan; rsync --stats), and prepcast's planning time. Both
// tools are timed on new connections (as cron runs them) and on kept ones:
// prepcast with the targets and engine of its 18:00 push (as "prepcast
// run" keeps them), rsync over an OpenSSH ControlMaster connection opened
// by its 18:00 run.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"

	"github.com/prepcast/prepcast/bench/internal/harness"
	"github.com/prepcast/prepcast/integration/faultproxy"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

func main() {
	out := flag.String("out", "/tmp/prepcast-filedelta", "work directory")
	n := flag.Int("difusores", 10, "difusores pushed to at once")
	rtt := flag.Duration("rtt", 40*time.Millisecond, "round-trip time added by each link")
	uplink := flag.Int64("uplink", 50_000_000, "uplink bytes per second, shared evenly by the difusores' links")
	fixtures := flag.String("fixtures", "packager/testdata/puebla", "directory of PUE_GUB_2024.{1800,2000}.csv.zst")
	bin := flag.String("prepcast", "bin/prepcast", "prepcast binary run as the difusores' apply command (package mode)")
	flag.Parse()
	if err := run(*out, *fixtures, *bin, *n, *rtt, *uplink); err != nil {
		fmt.Fprintln(os.Stderr, "filedelta:", err)
		os.Exit(1)
	}
}

func fixture(dir, name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, name+".csv.zst"))
	if err != nil {
		return nil, err
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	return dec.DecodeAll(data, nil)
}

// row is one line of the results table.
type row struct {
	tool            string
	wall            float64
	up, down        int64
	literal, copied int64
	note            string
}

func run(out, fixtures, bin string, n int, rtt time.Duration, uplink int64) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run make build first, or give -prepcast)", err)
	}
	old, err := fixture(fixtures, "PUE_GUB_2024.1800")
	if err != nil {
		return err
	}
	nw, err := fixture(fixtures, "PUE_GUB_2024.2000")
	if err != nil {
		return err
	}
	os.RemoveAll(out)
	src := filepath.Join(out, "tree")
	write := func(data []byte) error {
		p := filepath.Join(src, "datos", "PUE_GUB_2024.csv")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(src, "main.json"), []byte(fmt.Sprintf(`{"bytes":%d}`, len(data))), 0o644)
	}
	s, err := sshdtest.StartServer(filepath.Join(out, "sshd"), sshdtest.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	proxies := make([]*faultproxy.Proxy, n)
	for i := range proxies {
		p, err := faultproxy.Start(s.Addr())
		if err != nil {
			return err
		}
		defer p.Close()
		p.SetLatency(rtt / 2)
		p.SetBandwidth(uplink / int64(n))
		proxies[i] = p
	}
	wire := func() (up, down int64) {
		for _, p := range proxies {
			st := p.Stats()
			up += st.BytesUp
			down += st.BytesDown
		}
		return
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pubFile := filepath.Join(out, "manifest.pub")
	if err := os.WriteFile(pubFile, packager.EncodePublicKey(pub), 0o644); err != nil {
		return err
	}
	store, err := packager.OpenStore(filepath.Join(out, "state"))
	if err != nil {
		return err
	}
	// Each cut builds its package, as the institute's cut does when a
	// target is in package mode.
	cut := func() error {
		_, err := store.Cut(context.Background(), packager.CutOptions{Source: src, Key: priv, Pointers: []string{"main.json"}, Keep: 10, Package: true})
		return err
	}
	if err := write(old); err != nil {
		return err
	}
	if err := cut(); err != nil {
		return err
	}

	// prepcast, with and without copy-data, and in package mode: a fresh
	// engine and fresh connections for the timed push, so that planning
	// and connecting are in the time.
	pushPrepcast := func(name string, noDelta bool) (*publisher.Engine, []publisher.Result, time.Duration, error) {
		var specs []publisher.TargetSpec
		for i, p := range proxies {
			root := filepath.Join(out, name, fmt.Sprintf("d%02d", i))
			if err := os.MkdirAll(root, 0o755); err != nil {
				return nil, nil, 0, err
			}
			t, err := sftptarget.New(sftptarget.Config{Name: fmt.Sprintf("d%02d", i), Address: p.Addr(), User: "root", Root: root,
				IdentityFile: s.ClientKeyPath(), HostKey: s.HostKeyLine()}, nil)
			if err != nil {
				return nil, nil, 0, err
			}
			defer t.Close()
			spec := publisher.TargetSpec{Target: t}
			if name == "package" {
				spec.Apply = fmt.Sprintf("%s apply --root %s --public-key %s", bin, root, pubFile)
			}
			specs = append(specs, spec)
		}
		eng := &publisher.Engine{Store: store, PublicKey: pub, Publisher: "bench", NoDelta: noDelta, TargetsInFlight: n, Log: benchLog()}
		start := time.Now()
		res := eng.Push(context.Background(), specs)
		took := time.Since(start)
		for _, r := range res {
			if r.Err != nil {
				return nil, nil, 0, r.Err
			}
		}
		return eng, res, took, nil
	}
	pushPkg := func() ([]publisher.Result, time.Duration, error) {
		_, res, took, err := pushPrepcast("package", false)
		return res, took, err
	}
	// The daemon ("prepcast run") keeps its engine and one connection per
	// difusor for the night: the same targets and engine for every push.
	var keptEngine *publisher.Engine
	var keptSpecs []publisher.TargetSpec
	pushKept := func() ([]publisher.Result, time.Duration, error) {
		if keptEngine == nil {
			for i, p := range proxies {
				root := filepath.Join(out, "kept", fmt.Sprintf("d%02d", i))
				if err := os.MkdirAll(root, 0o755); err != nil {
					return nil, 0, err
				}
				t, err := sftptarget.New(sftptarget.Config{Name: fmt.Sprintf("d%02d", i), Address: p.Addr(), User: "root", Root: root,
					IdentityFile: s.ClientKeyPath(), HostKey: s.HostKeyLine()}, nil)
				if err != nil {
					return nil, 0, err
				}
				keptSpecs = append(keptSpecs, publisher.TargetSpec{Target: t})
			}
			keptEngine = &publisher.Engine{Store: store, PublicKey: pub, Publisher: "bench", TargetsInFlight: n, Log: benchLog()}
		}
		start := time.Now()
		res := keptEngine.Push(context.Background(), keptSpecs)
		took := time.Since(start)
		for _, r := range res {
			if r.Err != nil {
				return nil, 0, r.Err
			}
		}
		return res, took, nil
	}
	defer func() {
		for _, sp := range keptSpecs {
			sp.Target.Close()
		}
	}()
	// rsync over a kept connection: an OpenSSH master connection per
	// difusor (ControlMaster), opened before the timed run.
	var masters []string
	var mastersMu sync.Mutex
	defer func() {
		for _, m := range masters {
			_ = exec.Command("ssh", "-S", m, "-O", "exit", "x").Run()
		}
	}()
	rsyncAt := func(i int, p *faultproxy.Proxy, tree, master, flags string) (int64, error) {
		host, port, _ := strings.Cut(p.Addr(), ":")
		kh := filepath.Join(out, fmt.Sprintf("known_hosts_%d", i))
		os.WriteFile(kh, []byte(fmt.Sprintf("[%s]:%s %s\n", host, port, s.HostKeyLine())), 0o600)
		e := fmt.Sprintf("ssh -F /dev/null -p %s -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR",
			port, s.ClientKeyPath(), kh)
		if master != "" {
			e += " -o ControlMaster=auto -o ControlPersist=yes -S " + master
			mastersMu.Lock()
			if !slices.Contains(masters, master) {
				masters = append(masters, master)
			}
			mastersMu.Unlock()
		}
		dst := filepath.Join(out, tree, fmt.Sprintf("d%02d", i))
		os.MkdirAll(dst, 0o755)
		b, err := exec.Command("rsync", flags, "--stats", "-e", e, src+"/", "root@"+host+":"+dst+"/").CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("rsync: %v\n%s", err, b)
		}
		m := regexp.MustCompile(`Literal data: ([0-9,]+) bytes`).FindSubmatch(b)
		if m == nil {
			return 0, fmt.Errorf("rsync --stats: no literal data line:\n%s", b)
		}
		return strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
	}
	// rsyncEach runs one rsync per difusor at once (tree names their
	// destination directories; master, a control socket per difusor;
	// flags, -a or -az).
	rsyncEach := func(tree string, kept bool, flags string) (int64, time.Duration, error) {
		var wg sync.WaitGroup
		lits := make([]int64, n)
		errs := make([]error, n)
		start := time.Now()
		for i, p := range proxies {
			master := ""
			if kept {
				master = filepath.Join(out, fmt.Sprintf("cm-%d", i))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lits[i], errs[i] = rsyncAt(i, p, tree, master, flags)
			}()
		}
		wg.Wait()
		took := time.Since(start)
		var lit int64
		for i := range lits {
			if errs[i] != nil {
				return 0, 0, errs[i]
			}
			lit += lits[i]
		}
		return lit, took, nil
	}
	rsyncAll := func() (int64, time.Duration, error) { return rsyncEach("rsync", false, "-a") }

	// Everyone gets the 18:00 cut first.
	harness.Say("bringing %d difusores per tool to the 18:00 cut", n)
	for _, name := range []string{"copydata", "whole", "package"} {
		if _, _, _, err := pushPrepcast(name, name == "whole"); err != nil {
			return err
		}
	}
	if _, _, err := rsyncAll(); err != nil {
		return err
	}
	if _, _, err := rsyncEach("rsync-z", false, "-az"); err != nil {
		return err
	}
	// Kept connections: opened by bringing their trees to 18:00.
	if _, _, err := pushKept(); err != nil {
		return err
	}
	if _, _, err := rsyncEach("rsync-kept", true, "-a"); err != nil {
		return err
	}
	if err := write(nw); err != nil {
		return err
	}
	if err := cut(); err != nil {
		return err
	}
	var rows []row
	for _, name := range []string{"copydata", "whole"} {
		harness.Say("prepcast file mode, %s", name)
		u0, d0 := wire()
		eng, res, took, err := pushPrepcast(name, name == "whole")
		if err != nil {
			return err
		}
		u1, d1 := wire()
		r := row{tool: "prepcast file mode, whole files (no_delta)", wall: took.Seconds(), up: u1 - u0, down: d1 - d0}
		for _, x := range res {
			r.literal += x.Literal
			r.copied += x.Copied
		}
		if name == "copydata" {
			plans, pt := eng.DeltaStats()
			r.tool = "prepcast file mode, copy-data"
			r.note = fmt.Sprintf("%d plan(s) computed in %v for %d difusores", plans, pt.Round(time.Millisecond), n)
		} else {
			for _, x := range res {
				r.literal += x.Bytes
			}
		}
		rows = append(rows, r)
	}
	harness.Say("rsync -a, %d in parallel", n)
	u0, d0 := wire()
	lit, took, err := rsyncAll()
	if err != nil {
		return err
	}
	u1, d1 := wire()
	rows = append(rows, row{tool: fmt.Sprintf("rsync -a --stats, %d in parallel", n), wall: took.Seconds(), up: u1 - u0, down: d1 - d0, literal: lit})

	harness.Say("prepcast file mode, copy-data, kept connections; rsync -a over kept connections")
	u0, d0 = wire()
	kres, ktook, err := pushKept()
	if err != nil {
		return err
	}
	u1, d1 = wire()
	krow := row{tool: "prepcast file mode, copy-data, kept connections and engine (as `prepcast run`)", wall: ktook.Seconds(), up: u1 - u0, down: d1 - d0}
	for _, x := range kres {
		krow.literal += x.Literal
		krow.copied += x.Copied
	}
	u0, d0 = wire()
	klit, ktookR, err := rsyncEach("rsync-kept", true, "-a")
	if err != nil {
		return err
	}
	u1, d1 = wire()
	rows = append(rows, krow, row{tool: fmt.Sprintf("rsync -a --stats, %d in parallel, over kept connections (ssh ControlMaster)", n), wall: ktookR.Seconds(), up: u1 - u0, down: d1 - d0, literal: klit})

	harness.Say("prepcast package mode; rsync -az")
	u0, d0 = wire()
	pres, ptook, err := pushPkg()
	if err != nil {
		return err
	}
	u1, d1 = wire()
	prow := row{tool: "prepcast package mode (the file as a zstd delta, decoded by prepcast apply)", wall: ptook.Seconds(), up: u1 - u0, down: d1 - d0,
		note: "literal: the package sent"}
	for _, x := range pres {
		prow.literal += x.Bytes
	}
	u0, d0 = wire()
	zlit, ztook, err := rsyncEach("rsync-z", false, "-az")
	if err != nil {
		return err
	}
	u1, d1 = wire()
	rows = append(rows, prow, row{tool: fmt.Sprintf("rsync -az --stats, %d in parallel", n), wall: ztook.Seconds(), up: u1 - u0, down: d1 - d0, literal: zlit})

	for _, name := range []string{"copydata", "whole", "rsync", "kept", "rsync-kept", "package", "rsync-z"} {
		for i := range proxies {
			if err := harness.SameTree(src, filepath.Join(out, name, fmt.Sprintf("d%02d", i))); err != nil {
				return err
			}
		}
	}

	// The floor: what a push costs when only the pointer changes
	// (connect, check the ack, stage and flush one small file, commit,
	// write the ack, clean up), the same for every tool above.
	if err := os.WriteFile(filepath.Join(src, "main.json"), []byte(`{"bytes":0}`), 0o644); err != nil {
		return err
	}
	if err := cut(); err != nil {
		return err
	}
	harness.Say("prepcast file mode, only the pointer changed")
	fu0, fd0 := wire()
	_, _, floor, err := pushPrepcast("copydata", false)
	if err != nil {
		return err
	}
	fu1, fd1 := wire()
	floorRow := row{tool: "prepcast file mode, a cut that changes only main.json (the floor)", wall: floor.Seconds(), up: fu1 - fu0, down: fd1 - fd0}

	if err := harness.SameTree(src, filepath.Join(out, "copydata", "d00")); err != nil {
		return err
	}
	rows = append(rows, floorRow)

	fmt.Printf("## Puebla 2024 governor database, 18:00 to 20:00 cut (%s)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Printf("%d difusores, each through its own link: %v RTT, %.1f MB/s each way (a %.0f MB/s uplink shared evenly); one real sshd (OpenSSH internal-sftp).\n",
		n, rtt, float64(uplink)/float64(n)/1e6, float64(uplink)/1e6)
	fmt.Printf("File: %d bytes before, %d after.\n\n", len(old), len(nw))
	fmt.Println("| tool | wall s | up MB (all links) | down MB | literal KB per difusor | copied on server MB per difusor | notes |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %.2f | %.2f | %.2f | %.1f | %.2f | %s |\n", r.tool, r.wall, float64(r.up)/1e6, float64(r.down)/1e6,
			float64(r.literal)/float64(n)/1e3, float64(r.copied)/float64(n)/1e6, r.note)
	}
	c, w, rs := rows[0], rows[1], rows[2]
	fmt.Printf("\ncopy-data / rsync: literal bytes %.2f×, wall time %.2f×; copy-data / whole files: wall time %.2f×, bytes up %.2f×\n",
		float64(c.literal)/float64(rs.literal), c.wall/rs.wall, c.wall/w.wall, float64(c.up)/float64(w.up))
	k, rk := rows[3], rows[4]
	fmt.Printf("kept connections: copy-data / rsync: wall time %.2f×; copy-data kept / copy-data on new connections: %.2f×\n",
		k.wall/rk.wall, k.wall/c.wall)
	pk, rz := rows[5], rows[6]
	fmt.Printf("package mode / rsync -az: wall time %.2f×, bytes up %.2f×\n", pk.wall/rz.wall, float64(pk.up)/float64(rz.up))
	return nil
}

var _ targets.Target = (*sftptarget.Target)(nil)

func benchLog() *zap.Logger {
	if os.Getenv("FILEDELTA_DEBUG") == "" {
		return nil
	}
	l, _ := zap.NewDevelopment()
	return l
}
