// Package atomicfile replaces a local file whole: what fill writes goes to
// a temporary file in the same directory, which is renamed over the file
// once complete, so that a reader sees the old content or the new, never a
// part of either.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write creates or replaces path with the bytes fill writes, with mode
// perm, flushed to disk before the rename when durable. On any error,
// fill's included, the temporary file is removed and path is untouched.
func Write(path string, perm fs.FileMode, durable bool, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		err = fill(f)
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteBytes is Write with data as the content.
func WriteBytes(path string, data []byte, perm fs.FileMode, durable bool) error {
	return Write(path, perm, durable, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data))
		return err
	})
}
