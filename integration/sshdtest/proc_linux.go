//go:build linux

package sshdtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the times in /proc/PID/stat; Linux fixes it at 100
// for user space whatever the kernel's internal tick rate.
const userHZ = 100

// sysProcAttr puts sshd in its own process group and kills it if the process
// that started it dies, so that an aborted test run leaves no listener behind.
// Per-connection children call setsid themselves, so they are found by
// walking /proc instead (see processTree).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}

// procStat is the part of /proc/PID/stat this package uses.
type procStat struct {
	pid, ppid int
	state     byte
	ticks     uint64 // utime + stime + cutime + cstime
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	st := procStat{pid: pid, state: f[0][0]}
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: ppid: %w", pid, err)
	}
	for _, field := range f[11:15] { // fields 14-17: utime stime cutime cstime
		n, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse /proc/%d/stat: cpu time: %w", pid, err)
		}
		st.ticks += n
	}
	return st, nil
}

// processTree returns root and all its live descendants, root first.
func processTree(root int) ([]procStat, error) {
	rootStat, err := readProcStat(root)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		children[st.ppid] = append(children[st.ppid], st)
	}
	tree := []procStat{rootStat}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	return tree, nil
}

// freezeTree sends SIGSTOP to root and all its descendants and waits until
// each has stopped, repeating until no process that appeared meanwhile is
// left running (a stopped process cannot fork). It returns the pids it
// stopped, root first.
func freezeTree(root int) ([]int, error) {
	seen := map[int]bool{}
	var all []int
	for range 50 {
		tree, err := processTree(root)
		if err != nil {
			return all, fmt.Errorf("list processes of pid %d: %w", root, err)
		}
		var fresh []int
		for _, p := range tree {
			if !seen[p.pid] {
				seen[p.pid] = true
				fresh = append(fresh, p.pid)
				_ = syscall.Kill(p.pid, syscall.SIGSTOP)
			}
		}
		if len(fresh) == 0 {
			return all, nil
		}
		all = append(all, fresh...)
		waitStopped(fresh, time.Second)
	}
	return all, fmt.Errorf("freeze processes of pid %d: still forking", root)
}

// waitStopped waits until every pid is stopped, a zombie or gone.
func waitStopped(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for {
			st, err := readProcStat(pid)
			if err != nil || strings.IndexByte("TtZX", st.state) >= 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// killAll sends SIGKILL to every pid, the listener (first in pids) last.
func killAll(pids []int) {
	for i := len(pids) - 1; i >= 0; i-- {
		_ = syscall.Kill(pids[i], syscall.SIGKILL)
	}
}

// continueTree sends SIGCONT to the stopped pids and to root's current
// tree, listener last.
func continueTree(root int, stopped []int) error {
	pids := map[int]bool{}
	for _, p := range stopped {
		pids[p] = true
	}
	tree, err := processTree(root)
	for _, p := range tree {
		pids[p.pid] = true
	}
	delete(pids, root)
	var errs []error
	for p := range pids {
		if kerr := syscall.Kill(p, syscall.SIGCONT); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("continue pid %d: %w", p, kerr))
		}
	}
	if kerr := syscall.Kill(root, syscall.SIGCONT); kerr != nil {
		errs = append(errs, fmt.Errorf("continue pid %d: %w", root, kerr))
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("list processes of pid %d: %w", root, err))
	}
	return errors.Join(errs...)
}

// treeCPUSeconds sums utime, stime, cutime and cstime over root and its live
// descendants.
func treeCPUSeconds(root int) (float64, error) {
	tree, err := processTree(root)
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, p := range tree {
		ticks += p.ticks
	}
	return float64(ticks) / userHZ, nil
}

// ownsListener reports whether pid holds a TCP socket listening on
// 127.0.0.1:port, so that a banner on that port is known to be its own and
// not another process's that took the port first.
func ownsListener(pid, port int) bool {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	inodes := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(fdDir + "/" + e.Name())
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	if len(inodes) == 0 {
		return false
	}
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	wantPort := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		if strings.HasSuffix(f[1], wantPort) && inodes[f[9]] {
			return true
		}
	}
	return false
}
