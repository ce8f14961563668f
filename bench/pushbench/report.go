package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Goals of prepcast push against its peers.
const (
	goalRawShare    = 0.70 // full push: prepcast MB/s at least this share of the raw channel's
	goalFullWall    = 0.80 // full push: prepcast wall at most this times rsync -a's
	goalIncremental = 0.50 // incremental cut: prepcast wall and CPU at most this times N parallel rsync -a
)

func printTable(o *options, rows []*row, tr trees) {
	fmt.Printf("## prepcast push vs peers (%s, real sshd on 127.0.0.1, %s, medians of %d runs)\n\n",
		time.Now().UTC().Format("2006-01-02"), o.cipher, o.runs)
	fmt.Println("| scenario | tool | wall s | MB/s | client CPU s | server CPU s | client peak RSS MB | wall prepcast/peer (files · package) | CPU prepcast/peer (files · package) |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|")
	var pc, pk *row // prepcast in its default mode (SFTP files) and in package mode
	for _, r := range rows {
		ratio, cratio := "", ""
		switch {
		case r.peer == "" && r.pkg:
			pk = r
		case r.peer == "":
			pc, pk = r, nil
		default:
			for _, p := range []*row{pc, pk} {
				if p == nil || p.scenario != r.scenario {
					continue
				}
				if ratio != "" {
					ratio, cratio = ratio+" · ", cratio+" · "
				}
				ratio += fmt.Sprintf("%.2f", med(p, wallOf)/med(r, wallOf))
				cratio += fmt.Sprintf("%.2f", med(p, cpuOf)/med(r, cpuOf))
			}
		}
		fmt.Printf("| %s | %s | %.2f | %.0f | %.2f | %.2f | %.0f | %s | %s |\n", r.scenario, r.tool, med(r, wallOf), mbps(r),
			med(r, func(s sample) float64 { return s.client }), med(r, func(s sample) float64 { return s.server }),
			med(r, func(s sample) float64 { return s.rssMB }), ratio, cratio)
	}
	fmt.Println()
	printGoals(o, rows)
	fmt.Println()
	printNotes(o, tr)
}

// printGoals prints each goal with the ratio measured on this run.
func printGoals(o *options, rows []*row) {
	find := func(scenario, peer string) *row {
		for _, r := range rows {
			if strings.HasPrefix(r.scenario, scenario) && r.peer == peer && !r.pkg {
				return r
			}
		}
		return nil
	}
	findPkg := func(scenario string) *row {
		for _, r := range rows {
			if strings.HasPrefix(r.scenario, scenario) && r.pkg {
				return r
			}
		}
		return nil
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	fmt.Println("Goals, as measured on this run (SFTP file mode, the default; then package mode):")
	fmt.Println()
	for _, mode := range []string{"", ", package mode"} {
		get := func(scenario string) *row {
			if mode == "" {
				return find(scenario, "")
			}
			return findPkg(scenario)
		}
		printModeGoals(o, mode, get("full"), find("full", "raw"), find("full", "rsync"), get("incremental"), find("incremental", "rsync"), verdict)
	}
}

// printModeGoals prints the goals for one mode of prepcast (pc: full push,
// pi: incremental cut).
func printModeGoals(o *options, mode string, pc, raw, rs, pi, ri *row, verdict func(bool) string) {
	if pc == nil && pi == nil {
		return
	}
	switch {
	case pc == nil || raw == nil:
		fmt.Printf("- full push%s: prepcast MB/s ≥ %.0f %% of the raw channel's: not measured (needs the full scenario and the raw peer)\n", mode, goalRawShare*100)
	default:
		share := mbps(pc) / mbps(raw)
		fmt.Printf("- full push%s: prepcast MB/s ≥ %.0f %% of the raw channel's: %.0f %% (%.0f of %.0f MB/s): %s\n",
			mode, goalRawShare*100, share*100, mbps(pc), mbps(raw), verdict(share >= goalRawShare))
	}
	switch {
	case pc == nil || rs == nil:
		fmt.Printf("- full push%s: prepcast wall ≤ %.1f× rsync -a's: not measured (needs the full scenario and the rsync peer)\n", mode, goalFullWall)
	default:
		x := med(pc, wallOf) / med(rs, wallOf)
		fmt.Printf("- full push%s: prepcast wall ≤ %.1f× rsync -a's: %.2f×: %s\n", mode, goalFullWall, x, verdict(x <= goalFullWall))
	}
	pc, rs = pi, ri
	n := o.nTargets
	if pc == nil || rs == nil {
		fmt.Printf("- incremental cut to %d targets: prepcast wall and CPU ≤ %.1f× %d parallel rsync -a: not measured (needs the incremental scenario and the rsync peer)\n",
			n, goalIncremental, n)
		return
	}
	x := med(pc, wallOf) / med(rs, wallOf)
	fmt.Printf("- incremental cut to %d targets%s: prepcast wall ≤ %.1f× %d parallel rsync -a: %.2f×: %s\n", n, mode, goalIncremental, n, x, verdict(x <= goalIncremental))
	x = med(pc, cpuOf) / med(rs, cpuOf)
	fmt.Printf("- incremental cut to %d targets%s: prepcast CPU (client + server) ≤ %.1f× %d parallel rsync -a: %.2f×: %s\n", n, mode, goalIncremental, n, x, verdict(x <= goalIncremental))
}

func printNotes(o *options, tr trees) {
	ran := map[string]bool{}
	for _, sc := range o.scenarios {
		ran[sc] = true
	}
	var trs []string
	if ran["full"] {
		trs = append(trs, fmt.Sprintf("full: the final cut %s, %d files, %.2f GB", tr.fullCut, tr.fullFiles, float64(tr.fullBytes)/1e9))
	}
	if ran["incremental"] {
		how := "cut B written over cut A so that unchanged files keep their modification times, as a PREP generator leaves them"
		if o.rewriteAll {
			how = "every file of cut B with a new modification time (-rewrite-all), as a generator that rewrites its whole tree leaves them"
		}
		trs = append(trs, fmt.Sprintf("incremental: cut %s → %s, %d files of which %d changed, %.1f MB per target, %s",
			tr.cutA, tr.cutB, tr.incFiles, tr.incChanged, float64(tr.incDelta)/1e6, how))
	}
	var p1 strings.Builder
	fmt.Fprintf(&p1, "Trees from `resultsgen` at scale %.2f (%s). `make build && %s` reproduces it. ",
		o.scale, strings.Join(trs, "; "), o.reproduce)
	fmt.Fprintf(&p1, "Every tool used %s, the cipher prepcast negotiates by default (found by a probe push; the servers offered only it). ", o.cipher)
	if ran["incremental"] {
		var fullOnly []string
		for _, p := range o.peers {
			if !p.incremental {
				fullOnly = append(fullOnly, p.name)
			}
		}
		fmt.Fprintf(&p1, "In the incremental scenario a peer runs one process per target, all in parallel, each target starting "+
			"from cut A with cut A's modification times")
		if o.rewriteAll {
			p1.WriteString(", so that rsync compares every file and rclone and lftp send every file")
		} else {
			p1.WriteString(", so that rsync, rclone and lftp send only the changed files")
		}
		if len(fullOnly) > 0 && ran["full"] {
			fmt.Fprintf(&p1, " (full push only: %s)", strings.Join(fullOnly, ", "))
		}
		p1.WriteString(". ")
	}
	p1.WriteString("Every run of every row")
	if ran["full"] && slices.ContainsFunc(o.peers, func(p *peer) bool { return !p.writes }) {
		p1.WriteString(" but the raw channel's, which writes nothing,")
	}
	p1.WriteString(" was checked afterwards: each target's webroot holds every file of the tree with the same bytes.")
	var p2 strings.Builder
	p2.WriteString("MB/s is the tree's bytes (for the incremental cut, the changed files' bytes times the targets) over wall " +
		"time. Client CPU includes the processes a tool waits for (ssh, and tar for the raw channel). Client peak RSS is " +
		"that of the largest process of a tool's process tree, summed over processes run in parallel (each at least the " +
		"~7 MB of the small process that starts it). ")
	fmt.Fprintf(&p2, "Tools: %s.", versions())
	fmt.Print(wrapText(p1.String(), 100), "\n", wrapText(p2.String(), 100))
	for _, s := range o.skipped {
		fmt.Printf("\n%s.\n", s)
	}
}

// wrapText breaks text into lines of at most width characters at spaces
// and ends it with a newline.
func wrapText(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		l := utf8.RuneCountInString(w)
		switch {
		case n == 0:
		case n+1+l > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += l
	}
	b.WriteByte('\n')
	return b.String()
}

// versions names the installed tools' versions.
func versions() string {
	probes := []struct{ name, re string }{
		{"ssh", `OpenSSH_\S+`},
		{"rsync", `rsync\s+version\s+(\S+)`},
		{"rclone", `rclone\s+(v\S+)`},
		{"lftp", `LFTP \| Version (\S+)`},
	}
	var out []string
	for _, p := range probes {
		arg := "--version"
		switch p.name {
		case "ssh":
			arg = "-V"
		case "rclone":
			arg = "version"
		}
		b, err := exec.Command(p.name, arg).CombinedOutput()
		if err != nil {
			continue
		}
		m := regexp.MustCompile(p.re).FindSubmatch(b)
		switch {
		case m == nil:
			continue
		case len(m) > 1:
			out = append(out, p.name+" "+string(m[1]))
		default:
			out = append(out, string(m[0]))
		}
	}
	return strings.Join(out, ", ")
}
