package main

import "os"

// cycleSignals is empty on Windows, which has no SIGUSR1: run "prepcast
// cycle" there for a cycle now (its cut is pushed by the daemon).
var cycleSignals []os.Signal
