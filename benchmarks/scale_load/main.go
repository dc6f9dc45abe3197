// Load generator for `make bench-scale` (benchmarks/scale.py): drives one OpenSergo control plane
// with SubscribeConfig streams, ReportMetadata registrations and heartbeats, and token leases, and
// reports every figure beside its own CPU time (getrusage) and the control plane's (/proc/<pid>).
// Written in Go so that the load costs less CPU than the control plane it measures.
//
//	scale_load [common flags] register  -rate 2500 -duration 30s      new instances at a rate
//	scale_load [common flags] heartbeat -rate 10000 -instances 2000   the same reports again
//	scale_load [common flags] fanout    -streams 10000 -rounds 5      rule change -> every stream
//	scale_load [common flags] tokens    -streams 8 -batch 10          lease batches, closed loop
//	scale_load [common flags] hold      -streams 10000 -instances 10000   keep them until stdin closes
//
// Each command prints one JSON object on stdout (hold: a line "ready {...}"); progress goes to
// stderr. Common flags: -addr, -rest, -token, -namespace, -cp-pid.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"google.golang.org/grpc"
)

var logOut io.Writer = os.Stderr

func stdin() io.Reader { return os.Stdin }

func selfRSSKB() int64 { return procRSSKB(os.Getpid()) }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale_load: "+format+"\n", args...)
	os.Exit(1)
}

func emit(v any) {
	out, err := json.Marshal(v)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println(string(out))
}

func main() {
	common := flag.NewFlagSet("scale_load", flag.ExitOnError)
	var t target
	common.StringVar(&t.addr, "addr", "127.0.0.1:10246", "control plane gRPC address")
	common.StringVar(&t.rest, "rest", "http://127.0.0.1:10247", "control plane REST base URL (fanout)")
	common.StringVar(&t.token, "token", "", "bearer token (a control plane with --auth on)")
	common.StringVar(&t.namespace, "namespace", "default", "namespace of every call (opensergo-namespace header)")
	common.IntVar(&t.cpPID, "cp-pid", 0, "control-plane pid: its CPU and memory are reported beside the generator's")
	cpuProfile := common.String("cpuprofile", "", "write a Go CPU profile of the generator here")
	_ = common.Parse(os.Args[1:])
	if *cpuProfile != "" {
		out, err := os.Create(*cpuProfile)
		if err != nil {
			fail("%v", err)
		}
		_ = pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	if common.NArg() == 0 {
		fail("a command is required: register, heartbeat, fanout, tokens or hold")
	}
	raiseFileLimit()
	command, args := common.Arg(0), common.Args()[1:]
	fs := flag.NewFlagSet(command, flag.ExitOnError)
	rate := fs.Float64("rate", 2500, "calls per second (register, heartbeat)")
	duration := fs.Duration("duration", 30*time.Second, "measured window")
	warmup := fs.Duration("warmup", 3*time.Second, "load before the measured window")
	conns := fs.Int("conns", 8, "HTTP/2 connections (register, heartbeat, tokens)")
	concurrency := fs.Int("concurrency", 256, "calls in flight at most (register, heartbeat, hold registrations)")
	apps := fs.Int("apps", 100, "apps the instances are spread over")
	instances := fs.Int("instances", 2000, "instances (heartbeat: registered first, then reported again; hold)")
	streams := fs.Int("streams", 1000, "SubscribeConfig streams (fanout, hold) or Connect streams (tokens)")
	perConn := fs.Int("per-conn", 100, "SubscribeConfig streams per HTTP/2 connection")
	rounds := fs.Int("rounds", 5, "rule changes (fanout)")
	settle := fs.Duration("settle", 300*time.Millisecond, "CPU window after the last receipt, for the ACKs (fanout)")
	app := fs.String("app", "scale-app", "app the streams subscribe to (fanout, hold) or of the token rule")
	kind := fs.String("kind", "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy", "kind the streams subscribe to")
	batch := fs.Int("batch", 10, "lease requests per batch (tokens)")
	count := fs.Int("count", 1, "tokens per lease request (tokens)")
	resource := fs.String("resource", "GET:/scale", "resource of the token key (tokens)")
	rule := fs.String("rule", "scale-global", "Global RateLimitStrategy name of the token key (tokens)")
	prefix := fs.String("prefix", fmt.Sprintf("load-%d-%d", os.Getpid(), time.Now().Unix()), "host-name prefix of new instances")
	_ = fs.Parse(args)
	sub := subscription{namespace: t.namespace, app: *app, kind: *kind}
	pace := pacing{rate: *rate, warmup: *warmup, duration: *duration, concurrency: *concurrency}

	switch command {
	case "register":
		cs := mustDial(t, *conns)
		res := runPaced(t, cs, pace, func(ctx context.Context, conn *grpc.ClientConn, i int64) error {
			return report(ctx, conn, instanceReport(*prefix, i, *apps))
		})
		res.Description = fmt.Sprintf("ReportMetadata of a new instance each (%d apps)", *apps)
		emit(res)
	case "heartbeat":
		cs := mustDial(t, *conns)
		requests := make([][]byte, *instances)
		for i := range requests {
			requests[i] = instanceReport(*prefix, int64(i), *apps)
		}
		began := time.Now()
		if err := registerAll(t, cs, requests, *concurrency); err != nil {
			fail("registering %d instances: %v", *instances, err)
		}
		fmt.Fprintf(logOut, "  %d instances registered in %.1f s\n", *instances, time.Since(began).Seconds())
		// Each instance reports over one connection, as a data plane does: with several control-plane
		// processes behind the port, always to the process that holds it.
		res := runPaced(t, cs, pace, func(ctx context.Context, _ *grpc.ClientConn, i int64) error {
			n := i % int64(len(requests))
			return report(ctx, cs[n%int64(len(cs))], requests[n])
		})
		res.Instances = int64(*instances)
		res.Description = fmt.Sprintf("ReportMetadata repeating the report of %d registered instances", *instances)
		emit(res)
	case "fanout":
		res, err := runFanout(t, fanoutOptions{streams: *streams, perConn: *perConn, rounds: *rounds, sub: sub, settle: *settle})
		if err != nil {
			fail("fanout: %v", err)
		}
		emit(res)
	case "tokens":
		cs := mustDial(t, *conns)
		emit(runTokens(t, cs, tokenOptions{streams: *streams, batch: *batch, count: *count, warmup: *warmup,
			duration: *duration, app: *app, resource: *resource, rule: *rule}))
	case "hold":
		err := runHold(t, holdOptions{streams: *streams, perConn: *perConn, instances: *instances, apps: *apps,
			sub: sub, concurrency: *concurrency}, func(info map[string]any) {
			out, _ := json.Marshal(info)
			fmt.Printf("ready %s\n", out)
		})
		if err != nil {
			fail("hold: %v", err)
		}
	default:
		fail("unknown command %q", command)
	}
}

func mustDial(t target, n int) []*grpc.ClientConn {
	cs, err := t.dial(n)
	if err != nil {
		fail("dial %s: %v", t.addr, err)
	}
	return cs
}

// registerAll reports every request once, `concurrency` at a time, request i over connection i mod
// len(conns) (the one its heartbeats use).
func registerAll(t target, conns []*grpc.ClientConn, requests [][]byte, concurrency int) error {
	var errs errorCounts
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range next {
				ctx, cancel := context.WithTimeout(t.callContext(context.Background(), ""), 60*time.Second)
				if err := report(ctx, conns[i%len(conns)], requests[i]); err != nil {
					errs.add(err)
				}
				cancel()
			}
		}(w)
	}
	for i := range requests {
		next <- i
	}
	close(next)
	wg.Wait()
	if n := errs.total(); n > 0 {
		return fmt.Errorf("%d failed: %s", n, errs.first)
	}
	return nil
}
