package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux this runs on (Go
// cannot call sysconf without cgo).
const clockTicks = 100

// target is where the generator sends load and how it authenticates.
type target struct {
	addr      string
	rest      string // REST base URL (fan-out changes a rule through it)
	token     string // bearer token, when the control plane runs with --auth on
	namespace string
	cpPID     int // control-plane process whose CPU and memory are read from /proc
}

// callContext carries the SDK's headers: the namespace, the bearer token, and a client id.
func (t target) callContext(ctx context.Context, clientID string) context.Context {
	md := metadata.Pairs("opensergo-namespace", t.namespace)
	if t.token != "" {
		md.Append("authorization", "Bearer "+t.token)
	}
	if clientID != "" {
		md.Append("opensergo-client-id", clientID)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// dial opens n separate HTTP/2 connections (grpc-go gives every ClientConn its own).
func (t target) dial(n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for i := 0; i < n; i++ {
		conn, err := grpc.NewClient(t.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
			grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(8<<20))
		if err != nil {
			return nil, err
		}
		conn.Connect()
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit (one socket per connection).
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// --- CPU and memory ------------------------------------------------------------------------------

// ownCPU is this process's user + system CPU time (getrusage).
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statFields are the fields of /proc/<pid>/stat after the command name (nil if unreadable).
func statFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	text := string(data)
	return strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
}

// family is pid and its children: a control plane's worker processes (--workers) count as its own.
func family(pid int) []int {
	out := []int{pid}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if f := statFields(child); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// procCPU is the user + system CPU time of a process and its children, from /proc/<pid>/stat (0
// without a pid).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var ticks int64
	for _, p := range family(pid) {
		fields := statFields(p)
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// procRSSKB is the resident memory of a process and its children from /proc/<pid>/status, in KiB
// (0 without a pid).
func procRSSKB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	var total int64
	for _, p := range family(pid) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				if fields := strings.Fields(line); len(fields) >= 2 {
					kb, _ := strconv.ParseInt(fields[1], 10, 64)
					total += kb
				}
			}
		}
	}
	return total
}

// cpuSample reads both CPU clocks at one instant; sub gives what each spent in between.
type cpuSample struct {
	at      time.Time
	own, cp time.Duration
}

func sampleCPU(pid int) cpuSample {
	return cpuSample{at: time.Now(), own: ownCPU(), cp: procCPU(pid)}
}

type cpuUse struct {
	Seconds     float64 `json:"seconds"`
	GenCPUs     float64 `json:"gen_cpu_s"`
	CPCPUs      float64 `json:"cp_cpu_s"`
	GenCores    float64 `json:"gen_cores"`
	CPCores     float64 `json:"cp_cores"`
	LoadAverage string  `json:"load_average"`
}

func (s cpuSample) until(end cpuSample) cpuUse {
	wall := end.at.Sub(s.at).Seconds()
	u := cpuUse{Seconds: wall, GenCPUs: (end.own - s.own).Seconds(), CPCPUs: (end.cp - s.cp).Seconds(),
		LoadAverage: loadAverage()}
	if wall > 0 {
		u.GenCores = u.GenCPUs / wall
		u.CPCores = u.CPCPUs / wall
	}
	return u
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "?"
	}
	return strings.Join(fields[:3], "/")
}

// --- latencies and errors ------------------------------------------------------------------------

// latencies collects durations from many goroutines.
type latencies struct {
	mu     sync.Mutex
	values []time.Duration
}

func (l *latencies) add(batch []time.Duration) {
	l.mu.Lock()
	l.values = append(l.values, batch...)
	l.mu.Unlock()
}

type summary struct {
	Count int     `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	Maxms float64 `json:"max_ms"`
}

func summarize(values []time.Duration) summary {
	if len(values) == 0 {
		return summary{}
	}
	sorted := append([]time.Duration(nil), values...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	at := func(p float64) float64 {
		i := int(p*float64(len(sorted)-1) + 0.5)
		return float64(sorted[i].Microseconds()) / 1000
	}
	return summary{Count: len(sorted), P50ms: at(0.50), P99ms: at(0.99), Maxms: at(1)}
}

// errorCounts counts errors by gRPC status code.
type errorCounts struct {
	mu     sync.Mutex
	counts map[string]int64
	first  string
}

func (e *errorCounts) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[string]int64{}
	}
	e.counts[status.Code(err).String()]++
	if e.first == "" {
		e.first = err.Error()
	}
}

func (e *errorCounts) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, c := range e.counts {
		n += c
	}
	return n
}
