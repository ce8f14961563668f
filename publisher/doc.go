// Package publisher pushes cuts from the local store to every target
// (difusor) concurrently, each one atomically, and records each target's
// acknowledgement.
//
// For one target, a push reads the target's ack (.prepcast/ack.json), works
// out the delta from the cut it holds to the latest cut (reconciling by
// listing the target when its ack is missing or unknown), stages every new
// or changed file under .prepcast/staging/, renames them into place with the
// pointer files last, writes the new ack, and only then records the ack
// locally. Files that left the manifest are deleted from the target only
// after the retention window, so a reader that loaded the previous pointer
// can still fetch that cut's files.
//
// Guarantees, each tested: a target never serves a pointer that names a
// file it lacks or holds with other bytes (for a generator that gives each
// cut's pointed-to files their own paths); no file at a served path is ever
// partial; nothing is written outside a target's root; the local ack never
// claims more than the remote ack; one target's failure or slowness costs
// the others nothing; a target never moves back to an older cut.
package publisher
