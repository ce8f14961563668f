package packager

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prepcast/prepcast/internal/atomicfile"
	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/sysfs"
)

// fileStat is what the quick check compares between scans.
type fileStat struct {
	Size  int64
	MTime int64 // ns
	CTime int64 // ns
	Ino   uint64
}

func statOf(fi fs.FileInfo) fileStat {
	st := fileStat{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	st.CTime, st.Ino = sysfs.SysStat(fi)
	return st
}

// scanned is one regular file found by a scan.
type scanned struct {
	Path string
	Stat fileStat
}

// TreeError lists everything wrong with a results tree; no cut is made
// from such a tree.
type TreeError struct {
	Root     string
	Problems []string // "path: what is wrong"
	More     int      // problems not listed
}

func (e *TreeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "results tree %s cannot be cut (%d problem", e.Root, len(e.Problems)+e.More)
	if len(e.Problems)+e.More != 1 {
		b.WriteString("s")
	}
	b.WriteString("; fix them in the generator's output and cut again):")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", e.More)
	}
	return b.String()
}

const maxListedProblems = 20

// scanTree lists every regular file below root, sorted by path. It refuses
// the whole tree if any name is unsafe or any entry is not a regular file
// or directory: symbolic links are never followed, FIFOs, sockets and
// devices are never opened.
func scanTree(root string) ([]scanned, error) {
	fi, err := os.Stat(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("results tree %s does not exist (check source in the config, or pass --source)", root)
		}
		return nil, fmt.Errorf("results tree: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("results tree %s is not a directory", root)
	}
	te := &TreeError{Root: root}
	problem := func(rel, msg string) {
		if len(te.Problems) < maxListedProblems {
			te.Problems = append(te.Problems, fmt.Sprintf("%s: %s", displayPath(rel), msg))
		} else {
			te.More++
		}
	}
	var out []scanned
	var walk func(rel string)
	walk = func(rel string) {
		d, err := os.Open(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			problem(rel, "cannot read directory: "+errText(err))
			return
		}
		defer d.Close()
		des, err := d.ReadDir(-1)
		if err != nil {
			problem(rel, "cannot read directory: "+errText(err))
			return
		}
		for _, de := range des {
			child := de.Name()
			if rel != "" {
				child = rel + "/" + de.Name()
			}
			if err := safepath.Check(child); err != nil {
				problem(child, strings.TrimPrefix(err.Error(), safepath.ErrInvalid.Error()+" "))
				continue
			}
			switch t := de.Type(); {
			case t.IsDir():
				walk(child)
			case t.IsRegular():
				// Relative to the open directory: no path lookup per file.
				st, err := sysfs.StatAt(d, de.Name())
				if err != nil {
					problem(child, "cannot stat: "+errText(err))
					continue
				}
				if !st.Regular {
					problem(child, "changed type while the tree was scanned; cut again once the generator has finished")
					continue
				}
				out = append(out, scanned{Path: child, Stat: fileStat{Size: st.Size, MTime: st.MTime, CTime: st.CTime, Ino: st.Ino}})
			case t&fs.ModeSymlink != 0:
				problem(child, "is a symbolic link; prepcast publishes regular files only and never follows links (copy the file in instead)")
			default:
				problem(child, fmt.Sprintf("is not a regular file (%s); remove it from the results tree", typeName(t)))
			}
		}
	}
	walk("")
	if len(te.Problems) > 0 {
		return nil, te
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func displayPath(rel string) string {
	if rel == "" {
		return "."
	}
	return strconv.Quote(rel)[1 : len(strconv.Quote(rel))-1]
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "type " + m.String()
}

// scanIndex maps a path to the stat and SHA-256 seen at the last cut.
type scanIndex map[string]indexEntry

type indexEntry struct {
	Stat   fileStat
	SHA256 string
}

const indexHeader = "prepcast-scan/1"

// loadIndex reads the quick-check index; a missing or unreadable index is
// empty (everything is hashed again).
func loadIndex(p string) scanIndex {
	f, err := os.Open(p)
	if err != nil {
		return scanIndex{}
	}
	defer f.Close()
	idx := scanIndex{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != indexHeader {
		return scanIndex{}
	}
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 6 || !IsSHA256Hex(f[5]) {
			return scanIndex{}
		}
		var st fileStat
		var e1, e2, e3, e4 error
		st.Size, e1 = strconv.ParseInt(f[1], 10, 64)
		st.MTime, e2 = strconv.ParseInt(f[2], 10, 64)
		st.CTime, e3 = strconv.ParseInt(f[3], 10, 64)
		st.Ino, e4 = strconv.ParseUint(f[4], 10, 64)
		if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
			return scanIndex{}
		}
		idx[f[0]] = indexEntry{Stat: st, SHA256: f[5]}
	}
	if sc.Err() != nil {
		return scanIndex{}
	}
	return idx
}

// racyWindow is how close to the scan a file's timestamps may be before the
// quick check stops trusting them. A file rewritten again within the same
// timestamp tick as an earlier write (same size) would otherwise look
// unchanged. File timestamps come from the kernel's coarse clock, which
// ticks every 1 to 10 ms; the window leaves a tenfold margin. (Sources on a
// network filesystem whose server clock is off by more than that should be
// cut with --rehash.)
const racyWindow = 100 * time.Millisecond

// saveIndex writes the index for entries atomically, leaving out files
// whose timestamps are too close to scanStart to be trusted next time.
func saveIndex(p string, files []scanned, shas []string, scanStart time.Time) error {
	var b strings.Builder
	b.WriteString(indexHeader + "\n")
	limit := scanStart.Add(-racyWindow).UnixNano()
	for i, f := range files {
		if f.Stat.MTime >= limit || f.Stat.CTime >= limit || strings.ContainsAny(f.Path, "\t\n") {
			continue
		}
		fmt.Fprintf(&b, "%s\t%d\t%d\t%d\t%d\t%s\n", f.Path, f.Stat.Size, f.Stat.MTime, f.Stat.CTime, f.Stat.Ino, shas[i])
	}
	return atomicfile.WriteBytes(p, []byte(b.String()), 0o644, true)
}
