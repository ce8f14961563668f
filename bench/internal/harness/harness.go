// Package harness holds what prepcast's benchmark commands share: running a
// command with its output kept for the error, progress lines on standard
// error, and checking that a target holds a tree byte for byte.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Say prints one progress line on standard error, so that standard output
// carries only the results table.
func Say(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

// Sh runs a command; its error names the command and holds its output.
func Sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// SameFile reports whether two files hold the same bytes.
func SameFile(x, y string) bool {
	bx, err1 := os.ReadFile(x)
	by, err2 := os.ReadFile(y)
	return err1 == nil && err2 == nil && bytes.Equal(bx, by)
}

// SameTree checks that every regular file of want is in got with the same
// bytes (got may hold more: prepcast's own .prepcast directory, retired
// files).
func SameTree(want, got string) error {
	return filepath.Walk(want, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		if !SameFile(p, filepath.Join(got, rel)) {
			return fmt.Errorf("%s: %s differs from %s", got, rel, want)
		}
		return nil
	})
}
