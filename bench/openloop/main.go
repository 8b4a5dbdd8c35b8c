// Command openloop sends training submissions at a fixed rate, whatever the answers' latency
// (an open loop: no coordinated omission), and prints the latency percentiles.
//
//	go run ./bench/openloop -url http://127.0.0.1:8765 -rate 200 -seconds 15
//
// Each request's latency runs from the moment it was due, so a generator that falls behind
// shows as latency instead of hiding it. Go's HTTP client costs a few tens of microseconds of
// CPU per request: on a 2-core machine a Python client at 200/s took most of a core and
// measured its own queueing as much as the server.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8765", "the API's base URL")
	rate := flag.Float64("rate", 200, "submissions per second")
	seconds := flag.Float64("seconds", 15, "how long")
	token := flag.String("token", envOr("TOKEN", "runplane-dev-admin-token"), "bearer token")
	project := flag.String("project", envOr("PROJECT", "bench"), "project to submit to")
	run := flag.String("run", envOr("RUN", "open"), "prefix of the workload names")
	conns := flag.Int("conns", 64, "keep-alive connections at most")
	flag.Parse()

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        *conns,
			MaxIdleConnsPerHost: *conns,
			MaxConnsPerHost:     *conns,
		},
	}
	total := int(*rate * *seconds)
	interval := time.Duration(float64(time.Second) / *rate)
	latencies := make([]time.Duration, total)
	failed := make([]bool, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			body := fmt.Sprintf(`{"name":"%s-%d","project":"%s","spec":{"image":"pytorch/pytorch:2.4","compute":{"gpuDevicesRequest":1}}}`, *run, i, *project)
			req, err := http.NewRequest("POST", *url+"/api/v1/workloads/trainings", bytes.NewBufferString(body))
			if err != nil {
				panic(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+*token)
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			latencies[i] = time.Since(due)
			failed[i] = err != nil || resp.StatusCode != http.StatusCreated
		}(i, due)
	}
	wg.Wait()

	errors, slow, firstSlow, lastSlow := 0, 0, -1.0, 0.0
	for i, f := range failed {
		if f {
			errors++
		}
		if latencies[i] > 100*time.Millisecond {
			at := float64(i) / *rate
			if firstSlow < 0 {
				firstSlow = at
			}
			slow, lastSlow = slow+1, at
		}
	}
	sorted := append([]time.Duration(nil), latencies...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	pct := func(p float64) float64 {
		return float64(sorted[int(p*float64(len(sorted)-1))].Microseconds()) / 1000
	}
	fmt.Printf("rate %.0f/s for %.0f s: %d requests, %d errors, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		*rate, *seconds, total, errors, pct(0.50), pct(0.99), pct(1))
	if slow > 0 {
		fmt.Printf("  %d slower than 100 ms, due from %.1f s to %.1f s\n", slow, firstSlow, lastSlow)
	}
	if errors > 0 {
		os.Exit(1)
	}
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
