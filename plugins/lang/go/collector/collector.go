// Package collector keeps Go's garbage collector out of the allocation hook routerd calls.
// Every Go plugin for routerd needs it: import it and call AfterCall on the way out of every
// exported function (`defer collector.AfterCall()`).
//
// Why: routerd hands a call its arguments (and an import its results) by asking the guest
// for memory through `cabi_realloc`, and the component model forbids calling an import while
// that runs. Go's collector runs inside whatever allocation crosses its threshold; when a
// collection ends there, it reads the wall clock, which the WASI adapter answers with an
// import: the call traps with "cannot leave component instance" (about once in 150,000 calls
// under load). So automatic collection is off, and this package collects between calls
// instead, inside an export, where imports are allowed: after every 256 calls, or sooner once
// the calls allocated 4 MiB since the last collection (looked at every 16 calls, so a plugin
// that allocates more than a few MiB in one call still stays far below its memory cap).
package collector

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

const (
	everyCalls = 256
	everyBytes = 4 << 20
)

var (
	calls     uint32
	lastAlloc uint64
	sample    = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
)

func init() {
	debug.SetGCPercent(-1)
}

// AfterCall collects garbage when enough calls or bytes have gone by since the last time.
// Call it at the end of every exported function. Most calls only count; the allocation
// counter is read every 16 calls, since reading it costs about as much as a small call.
func AfterCall() {
	calls++
	if calls%16 != 0 && calls < everyCalls {
		return
	}
	metrics.Read(sample)
	allocated := sample[0].Value.Uint64()
	if calls < everyCalls && allocated-lastAlloc < everyBytes {
		return
	}
	runtime.GC()
	calls = 0
	lastAlloc = allocated
}
