package harness

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Mirror makes dst hold every file and directory of src with the same
// bytes, permissions and modification time, like rsync -a: a file of dst
// with the size and modification time of src's is left alone. With del,
// whatever dst holds that src does not is removed. Symbolic links and other
// special files are not copied.
func Mirror(src, dst string, del bool) error {
	if del {
		if err := prune(src, dst); err != nil {
			return err
		}
	}
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(to, 0o755)
		case !fi.Mode().IsRegular():
			return nil
		}
		if cur, err := os.Lstat(to); err == nil && cur.Mode().IsRegular() && cur.Size() == fi.Size() && cur.ModTime().Equal(fi.ModTime()) {
			return nil
		}
		return copyFile(p, to, fi)
	})
}

// prune removes from dst whatever is not in src as the same kind of entry (a
// directory or a regular file).
func prune(src, dst string) error {
	return filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if os.IsNotExist(err) && p == dst {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		cur, serr := os.Lstat(filepath.Join(src, rel))
		switch {
		case serr == nil && cur.IsDir() == fi.IsDir() && (cur.IsDir() || cur.Mode().IsRegular()):
			return nil
		case serr != nil && !os.IsNotExist(serr):
			return serr
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if fi.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}

// copyFile replaces to with a copy of from, whose info is fi.
func copyFile(from, to string, fi os.FileInfo) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if cur, err := os.Lstat(to); err == nil && !cur.Mode().IsRegular() {
		if err := os.RemoveAll(to); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(to, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chtimes(to, fi.ModTime(), fi.ModTime())
}
