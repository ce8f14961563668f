package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// serverCPU accounts the CPU time the difusores' servers spend (each
// listening sshd and everything it forks: the sshd of every connection,
// its SFTP sessions, rsync, prepcast apply) in a cgroup of their own. On
// this benchmark's machine the difusores share the client's cores, so
// their cost is part of what a run measures; on election night each
// difusor pays it on its own machine.
type serverCPU struct {
	dir   string
	usage func() (time.Duration, error)
}

// newServerCPU makes a cgroup holding pids (cgroup v1's cpuacct or cgroup
// v2), or says why it cannot.
func newServerCPU(pids []int) (*serverCPU, error) {
	name := fmt.Sprintf("prepcast-night-%d", os.Getpid())
	var c *serverCPU
	switch {
	case exists("/sys/fs/cgroup/cpuacct/cpuacct.usage"):
		dir := filepath.Join("/sys/fs/cgroup/cpuacct", name)
		c = &serverCPU{dir: dir, usage: func() (time.Duration, error) {
			ns, err := readInt(filepath.Join(dir, "cpuacct.usage"))
			return time.Duration(ns), err
		}}
	default:
		root := "/sys/fs/cgroup"
		if !exists(filepath.Join(root, "cgroup.controllers")) {
			root = "/sys/fs/cgroup/unified"
		}
		if !exists(filepath.Join(root, "cgroup.controllers")) && !exists(filepath.Join(root, "cgroup.procs")) {
			return nil, errors.New("no cpuacct or cgroup v2 hierarchy under /sys/fs/cgroup")
		}
		dir := filepath.Join(root, name)
		c = &serverCPU{dir: dir, usage: func() (time.Duration, error) {
			b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
			if err != nil {
				return 0, err
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
					us, err := strconv.ParseInt(v, 10, 64)
					return time.Duration(us) * time.Microsecond, err
				}
			}
			return 0, fmt.Errorf("%s/cpu.stat has no usage_usec", dir)
		}}
	}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup for the difusores' CPU: %w", err)
	}
	for _, pid := range pids {
		if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			c.close()
			return nil, fmt.Errorf("move sshd %d into %s: %w", pid, c.dir, err)
		}
	}
	if _, err := c.usage(); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// close removes the cgroup once its processes have exited (it stays
// while one still runs).
func (c *serverCPU) close() {
	if c == nil {
		return
	}
	for range 50 {
		if err := os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// now is the cgroup's CPU time so far; 0 without a cgroup.
func (c *serverCPU) now() time.Duration {
	if c == nil {
		return 0
	}
	d, err := c.usage()
	if err != nil {
		return 0
	}
	return d
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
