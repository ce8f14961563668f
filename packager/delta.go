package packager

// Delta is what a target holding cut From needs to hold cut To: the entries
// of To that are new or have other content, and the paths of From that To no
// longer has. It is computed from manifests alone.
type Delta struct {
	From    *Manifest // nil for a target that holds nothing
	To      *Manifest
	Changed []Entry  // new or changed entries of To, sorted by path
	Deleted []string // paths of From absent from To, sorted
}

// ComputeDelta returns the delta from one manifest to another. from may be
// nil (everything in to is new).
func ComputeDelta(from, to *Manifest) *Delta {
	d := &Delta{From: from, To: to}
	var old []Entry
	if from != nil {
		old = from.Entries
	}
	i, j := 0, 0
	for i < len(old) || j < len(to.Entries) {
		switch {
		case j == len(to.Entries) || (i < len(old) && old[i].Path < to.Entries[j].Path):
			d.Deleted = append(d.Deleted, old[i].Path)
			i++
		case i == len(old) || to.Entries[j].Path < old[i].Path:
			d.Changed = append(d.Changed, to.Entries[j])
			j++
		default:
			if old[i] != to.Entries[j] {
				d.Changed = append(d.Changed, to.Entries[j])
			}
			i++
			j++
		}
	}
	return d
}

// Bytes returns the payload bytes of the delta: the sum of the changed
// entries' sizes.
func (d *Delta) Bytes() int64 {
	var n int64
	for _, e := range d.Changed {
		n += e.Size
	}
	return n
}

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool { return len(d.Changed) == 0 && len(d.Deleted) == 0 }
