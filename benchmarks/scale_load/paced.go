package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// tick: the pacer releases the calls due within one tick together (fewer wake-ups than a timer
// per call); "from due" latencies include up to one tick.
const tick = 2 * time.Millisecond

const reportMethod = "/opensergo.proto.service_contract.v1.MetadataService/ReportMetadata"

// pacing: calls are due at a fixed rate (open loop) and taken by a pool of workers. When the
// control plane falls behind, the workers are all busy, calls start late, and the achieved rate
// drops below the target: both the call latency and the latency from the due time are reported.
type pacing struct {
	rate        float64
	warmup      time.Duration
	duration    time.Duration
	concurrency int
}

type pacedResult struct {
	TargetPerS   float64          `json:"target_per_s"`
	AchievedPerS float64          `json:"achieved_per_s"` // calls answered OK within the window, per second
	Answered     int64            `json:"answered"`
	Errors       int64            `json:"errors"`
	ErrorCodes   map[string]int64 `json:"error_codes,omitempty"`
	FirstError   string           `json:"first_error,omitempty"`
	Call         summary          `json:"call"`        // from the call's start to its answer
	FromDue      summary          `json:"from_due"`    // from when the call was due (queueing included)
	Concurrency  int              `json:"concurrency"` // workers (most calls in flight)
	Connections  int              `json:"connections"` // HTTP/2 connections
	CPU          cpuUse           `json:"cpu"`         // over the measured window
	Instances    int64            `json:"instances"`   // distinct instances the calls reported
	Unsent       int64            `json:"unsent"`      // calls due by the end that no worker was free to start
	CPRSSMB      float64          `json:"cp_rss_mb"`   // at the end
	Description  string           `json:"description"` // what was measured
}

type job struct {
	index int64
	due   time.Time
}

// runPaced calls `call(conn, i)` for i = 0, 1, ... at `p.rate` per second; the window after the
// warm-up is measured (answers that arrive within it).
func runPaced(t target, conns []*grpc.ClientConn, p pacing, call func(ctx context.Context, conn *grpc.ClientConn, i int64) error) pacedResult {
	jobs := make(chan job, p.concurrency)
	start := time.Now()
	windowStart := start.Add(p.warmup)
	end := windowStart.Add(p.duration)
	var answered atomic.Int64
	var errs errorCounts
	var callLat, dueLat latencies
	var wg sync.WaitGroup
	headers := t.callContext(context.Background(), "") // the same headers on every call
	for w := 0; w < p.concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn := conns[w%len(conns)]
			var calls, dues []time.Duration
			for j := range jobs {
				began := time.Now()
				ctx, cancel := context.WithTimeout(headers, 30*time.Second)
				err := call(ctx, conn, j.index)
				cancel()
				done := time.Now()
				if done.Before(windowStart) || done.After(end) {
					continue
				}
				if err != nil {
					errs.add(err)
					continue
				}
				answered.Add(1)
				calls = append(calls, done.Sub(began))
				dues = append(dues, done.Sub(j.due))
			}
			callLat.add(calls)
			dueLat.add(dues)
		}(w)
	}
	windowOpen := make(chan cpuSample, 1)
	go func() {
		time.Sleep(time.Until(windowStart))
		windowOpen <- sampleCPU(t.cpPID)
	}()
	// The pacer: every tick, release the calls that have become due (a few per tick: fewer
	// wake-ups than one timer per call).
	interval := time.Duration(float64(time.Second) / p.rate)
	var sent int64
	ticker := time.NewTicker(tick)
	stop := make(chan struct{}) // closed at the end: a worker may never free up again before
	time.AfterFunc(time.Until(end), func() { close(stop) })
	for range ticker.C {
		now := time.Now() // not the tick's time: ticks wait while the pacer blocks
		if now.After(end) {
			break
		}
		due := int64(now.Sub(start).Seconds()*p.rate) + 1 // call k is due at k / rate
	release:
		for ; sent < due; sent++ {
			select {
			case jobs <- job{index: sent, due: start.Add(time.Duration(sent) * interval)}:
			case <-stop:
				break release // every worker is busy: the calls still due are never sent
			}
		}
	}
	ticker.Stop()
	cpu := (<-windowOpen).until(sampleCPU(t.cpPID))
	close(jobs)
	wg.Wait()
	codes := map[string]int64{}
	errs.mu.Lock()
	for k, v := range errs.counts {
		codes[k] = v
	}
	errs.mu.Unlock()
	return pacedResult{
		TargetPerS:   p.rate,
		AchievedPerS: float64(answered.Load()) / p.duration.Seconds(),
		Answered:     answered.Load(),
		Errors:       errs.total(),
		ErrorCodes:   codes,
		FirstError:   errs.first,
		Call:         summarize(callLat.values),
		FromDue:      summarize(dueLat.values),
		Concurrency:  p.concurrency,
		Connections:  len(conns),
		CPU:          cpu,
		Instances:    sent,
		Unsent:       max(0, int64(end.Sub(start).Seconds()*p.rate)+1-sent),
		CPRSSMB:      float64(procRSSKB(t.cpPID)) / 1024,
	}
}

// instanceReport is instance i's ReportMetadataRequest: unique host name and address, spread
// over `apps` apps.
func instanceReport(prefix string, i int64, apps int) []byte {
	app := "scale-app-" + itoa(i%int64(apps))
	address := "10." + itoa((i>>16)&255) + "." + itoa((i>>8)&255) + "." + itoa(i&255)
	return reportRequest(app, prefix+"-"+itoa(i), uint32(1000+i%60000), address, uint32(8080+i%1000))
}

func itoa(i int64) string {
	var buf [20]byte
	n := len(buf)
	if i == 0 {
		return "0"
	}
	for i > 0 {
		n--
		buf[n] = byte('0' + i%10)
		i /= 10
	}
	return string(buf[n:])
}

// report sends one ReportMetadata; ctx carries the headers (target.callContext).
func report(ctx context.Context, conn *grpc.ClientConn, request []byte) error {
	var reply []byte
	return conn.Invoke(ctx, reportMethod, &request, &reply)
}
