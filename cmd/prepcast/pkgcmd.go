package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/prepcast/prepcast/internal/atomicfile"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/status"
)

// cmdPackage writes the package stream of a cut (a tar in a zstd stream)
// to a file or to standard output, checking it against the SHA-256 its
// index recorded: what an operator carries to a difusor by hand, or
// inspects with zstd and tar.
func cmdPackage(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("package")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	to := fs.Int64("cut", 0, "the cut the package brings a difusor to (default: the latest)")
	from := fs.Int64("from", -1, "the cut the difusor holds, 0 for none (default: the cut before --cut)")
	out := fs.String("out", "", `file to write the package to, or "-" for standard output`)
	whole := fs.Bool("whole-files", false, "carry rewritten files whole, not as deltas against the difusor's cut (for an apply older than deltas, or a root whose files were changed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return &usageError{`package: give --out FILE, or --out - to write to standard output`}
	}
	_, store, err := loadStore(*cfgPath)
	if err != nil {
		return err
	}
	if *to == 0 {
		latest, err := store.Latest()
		if err != nil {
			return err
		}
		if latest == nil {
			return errors.New("package: the store has no cuts yet (run prepcast cut)")
		}
		*to = latest.Seq
	}
	if *from < 0 {
		*from = *to - 1
	}
	form := packager.FileDeltas
	if *whole {
		form = packager.WholeFiles
	}
	r, err := store.OpenPackage(*from, *to, form)
	if err != nil {
		return err
	}
	defer r.Close()

	// send writes the stream, checked against its record.
	info := r.Info()
	var n int64
	send := func(w io.Writer) error {
		h := sha256.New()
		var err error
		if n, err = io.CopyBuffer(io.MultiWriter(w, h), r, make([]byte, 1<<20)); err != nil {
			return fmt.Errorf("package from cut %d to cut %d: %w", *from, *to, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != info.Size || sum != info.SHA256 {
			_ = store.DiscardPackage(*from, *to, form)
			return fmt.Errorf("package from cut %d to cut %d: the stream (%d bytes, sha256 %s) does not match its record (%d bytes, sha256 %s): the store is damaged; the package was discarded, run the command again to build it from the objects", *from, *to, n, sum, info.Size, info.SHA256)
		}
		return nil
	}
	if *out == "-" {
		if sf, ok := stdout.(*os.File); ok && term.IsTerminal(int(sf.Fd())) {
			return &usageError{"package: standard output is a terminal; redirect it, or give --out FILE"}
		}
		if err := send(stdout); err != nil {
			return err
		}
	} else if err := atomicfile.Write(*out, 0o600, true, send); err != nil {
		return fmt.Errorf("package: %w", err)
	}
	fmt.Fprintf(stderr, "package from cut %d to cut %d: %s, sha256 %s\n", *from, *to, status.FormatBytes(n), info.SHA256)
	return nil
}
