// Package rdelta plans how to rebuild a new version of a file from an old
// version the receiver already holds: a list of ranges copied from the old
// file and ranges of literal bytes taken from the new one.
//
// Planning is local. Both versions are in the publisher's cut store, so no
// checksums are exchanged with the receiver (unlike rsync) and matches are
// confirmed by comparing bytes, which is stronger than rsync's strong hash.
// A rolling hash over fixed-size windows of the new file finds blocks of
// the old file wherever they moved (an insertion or deletion shifts the
// rest of the file; matching is not tied to block boundaries of the new
// file), and each match is then extended byte by byte forwards and
// backwards, so the literal ranges shrink to about the bytes that really
// changed rather than whole blocks as in rsync.
package rdelta

import (
	"errors"
	"fmt"
)

// Op is one step of a plan. Ops of a plan cover the new file in order,
// without gaps or overlap: op i starts at the new-file offset where op i-1
// ends.
type Op struct {
	// Copy is true for a range copied from the old file, false for literal
	// bytes of the new file.
	Copy bool
	// Src is the old file's offset the range is copied from (Copy only).
	Src int64
	// Dst is the new file's offset of the range; literal bytes are
	// new[Dst:Dst+Len].
	Dst int64
	// Len is the range's length in bytes, at least 1.
	Len int64
}

// Plan rebuilds a file of NewSize bytes from an old file of OldSize bytes.
type Plan struct {
	OldSize, NewSize int64
	Ops              []Op
	// Literal is the sum of the literal ranges' lengths, Copied the sum of
	// the copied ones'; Literal+Copied == NewSize.
	Literal, Copied int64
	// Probe is an offset at which the old and the new file differ
	// (Probe < min(OldSize, NewSize)), or -1 when one is a prefix of the
	// other (their sizes then tell them apart). Reading a few bytes of the
	// receiver's file at Probe tells whether it holds the old version or
	// already the new one.
	Probe int64
}

// MinBlock is the smallest window the planner matches; shorter identical
// runs are sent as literal bytes.
const MinBlock = 32

// Options tune planning; the zero value picks defaults.
type Options struct {
	// Block is the window size in bytes (default: 64, larger for files
	// over 64 MiB so that the old file's index stays near a million
	// entries). Values below MinBlock are raised to it.
	Block int
	// MaxCandidates bounds how many old blocks sharing one hash are tried
	// at one position (default 8), which bounds the time spent on highly
	// repetitive content.
	MaxCandidates int
	// MinCopy is the shortest copied range kept; a shorter one is sent as
	// literal bytes, joining the literal ranges next to it (default
	// DefaultMinCopy; negative keeps every copy).
	// Each range is one request the receiver's server handles: a results
	// database with many small edits has a few thousand ranges of tens of
	// bytes otherwise.
	MinCopy int
}

// DefaultMinCopy is the default Options.MinCopy: on the Puebla governor
// database's 18:00 to 20:00 update it turns 2,010 ranges into 370 for
// 298 KB of literal bytes instead of 41 KB (rsync sends 587 KB).
const DefaultMinCopy = 512

func (o Options) block(oldSize int) int {
	b := o.Block
	if b == 0 {
		b = 64
		for oldSize/b > 1<<20 {
			b *= 2
		}
	}
	return max(b, MinBlock)
}

// hash multiplier for the polynomial rolling hash (a large odd constant).
const mult = 0x100000001b3

// Compute plans how to rebuild newData from oldData. It never fails; for
// unrelated content the plan is one literal range.
func Compute(oldData, newData []byte, opt Options) *Plan {
	p := &Plan{OldSize: int64(len(oldData)), NewSize: int64(len(newData)), Probe: probe(oldData, newData)}
	B := opt.block(len(oldData))
	maxCand := opt.MaxCandidates
	if maxCand <= 0 {
		maxCand = 8
	}
	b := &builder{p: p}
	if len(oldData) < B || len(newData) < B {
		b.literal(0, int64(len(newData)))
		return b.done()
	}

	// Index the old file's blocks at multiples of B.
	nblocks := len(oldData) / B
	tsize := 1
	for tsize < 2*nblocks {
		tsize <<= 1
	}
	mask := uint64(tsize - 1)
	head := make([]int32, tsize) // 1-based block index; 0 = empty
	next := make([]int32, nblocks+1)
	var pow uint64 = 1 // mult^(B-1)
	for i := 1; i < B; i++ {
		pow *= mult
	}
	hashAt := func(d []byte) uint64 {
		var h uint64
		for _, c := range d {
			h = h*mult + uint64(c)
		}
		return h
	}
	// Insert from the last block to the first so that chains list earlier
	// blocks first.
	for i := nblocks - 1; i >= 0; i-- {
		h := hashAt(oldData[i*B:(i+1)*B]) & mask
		next[i+1] = head[h]
		head[h] = int32(i + 1)
	}

	lit := 0     // start of the pending literal range in newData
	expect := -1 // old offset following the last match, tried first
	pos := 0     // window start in newData
	h := hashAt(newData[:B])
	var bestLen, bestSrc, bestBack int
	try := func(src int) {
		if src < 0 || src+B > len(oldData) {
			return
		}
		fwd := matchFwd(oldData[src:], newData[pos:])
		if fwd < B {
			return
		}
		back := matchBack(oldData[:src], newData[lit:pos])
		if fwd+back > bestLen {
			bestLen, bestSrc, bestBack = fwd+back, src, back
		}
	}
	for pos+B <= len(newData) {
		bestLen = 0
		if expect >= 0 {
			try(expect)
		}
		if bestLen == 0 {
			n := 0
			for c := head[h&mask]; c != 0 && n < maxCand; c = next[c] {
				try(int(c-1) * B)
				n++
			}
		}
		if bestLen > 0 {
			start := pos - bestBack
			b.literal(int64(lit), int64(start-lit))
			b.copy(int64(bestSrc-bestBack), int64(start), int64(bestLen))
			pos = start + bestLen
			lit = pos
			expect = bestSrc - bestBack + bestLen
			if pos+B <= len(newData) {
				h = hashAt(newData[pos : pos+B])
			}
			continue
		}
		// Roll the window one byte on.
		if pos+B < len(newData) {
			h = (h-uint64(newData[pos])*pow)*mult + uint64(newData[pos+B])
		}
		pos++
	}
	b.literal(int64(lit), int64(len(newData)-lit))
	minCopy := opt.MinCopy
	if minCopy == 0 {
		minCopy = DefaultMinCopy
	}
	return b.coalesce(int64(minCopy))
}

// matchFwd is the length of the common prefix of a and b.
func matchFwd(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n && string(a[i:i+8]) == string(b[i:i+8]) {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// matchBack is the length of the common suffix of a and b.
func matchBack(a, b []byte) int {
	i, j := len(a), len(b)
	for i > 0 && j > 0 && a[i-1] == b[j-1] {
		i--
		j--
	}
	return len(a) - i
}

// probe is the first offset at which a and b differ, -1 if one is a prefix
// of the other.
func probe(a, b []byte) int64 {
	n := matchFwd(a, b)
	if n == min(len(a), len(b)) {
		return -1
	}
	return int64(n)
}

// builder appends ops, merging a copy that continues the previous one.
type builder struct{ p *Plan }

func (b *builder) literal(dst, n int64) {
	if n <= 0 {
		return
	}
	b.p.Literal += n
	if k := len(b.p.Ops); k > 0 && !b.p.Ops[k-1].Copy {
		b.p.Ops[k-1].Len += n
		return
	}
	b.p.Ops = append(b.p.Ops, Op{Dst: dst, Len: n})
}

func (b *builder) copy(src, dst, n int64) {
	if n <= 0 {
		return
	}
	b.p.Copied += n
	if k := len(b.p.Ops); k > 0 {
		if last := &b.p.Ops[k-1]; last.Copy && last.Src+last.Len == src {
			last.Len += n
			return
		}
	}
	b.p.Ops = append(b.p.Ops, Op{Copy: true, Src: src, Dst: dst, Len: n})
}

func (b *builder) done() *Plan { return b.p }

// coalesce turns copies shorter than minCopy into literal bytes, merged
// with the literal ranges next to them.
func (b *builder) coalesce(minCopy int64) *Plan {
	ops := b.p.Ops
	if minCopy <= 0 || len(ops) < 3 {
		return b.p
	}
	out := &builder{p: &Plan{OldSize: b.p.OldSize, NewSize: b.p.NewSize, Probe: b.p.Probe}}
	for _, op := range ops {
		if op.Copy && op.Len >= minCopy {
			out.copy(op.Src, op.Dst, op.Len)
		} else {
			out.literal(op.Dst, op.Len)
		}
	}
	return out.p
}

// Apply rebuilds the new file from oldData and the plan, reading literal
// ranges from newData (which a receiver would get over the wire). It
// checks the plan as it goes and is meant for tests and checks.
func (p *Plan) Apply(oldData []byte, lit func(dst, n int64) []byte) ([]byte, error) {
	if int64(len(oldData)) != p.OldSize {
		return nil, fmt.Errorf("old file has %d bytes, the plan expects %d", len(oldData), p.OldSize)
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, p.NewSize)
	for _, op := range p.Ops {
		if op.Copy {
			out = append(out, oldData[op.Src:op.Src+op.Len]...)
		} else {
			out = append(out, lit(op.Dst, op.Len)...)
		}
	}
	return out, nil
}

// Check reports whether the ops cover the new file in order and every
// copy lies within the old file.
func (p *Plan) Check() error {
	var at, litSum, cpSum int64
	for i, op := range p.Ops {
		switch {
		case op.Len <= 0:
			return fmt.Errorf("op %d has length %d", i, op.Len)
		case op.Dst != at:
			return fmt.Errorf("op %d starts at %d, want %d", i, op.Dst, at)
		case op.Copy && (op.Src < 0 || op.Src+op.Len > p.OldSize):
			return fmt.Errorf("op %d copies [%d,%d) outside the old file's %d bytes", i, op.Src, op.Src+op.Len, p.OldSize)
		}
		if op.Copy {
			cpSum += op.Len
		} else {
			litSum += op.Len
		}
		at += op.Len
	}
	if at != p.NewSize {
		return fmt.Errorf("ops cover %d bytes, the new file has %d", at, p.NewSize)
	}
	if litSum != p.Literal || cpSum != p.Copied {
		return errors.New("literal and copied totals do not match the ops")
	}
	return nil
}
