package trace

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/record"
)

// BenchmarkRecorder is what -w adds to a trace for each event: the hop's
// comment, its endpoints named from the Kubernetes names and node reports
// of a recording of the lab (its Services among them), and the pcapng
// block, written to io.Discard. An op is an event.
func BenchmarkRecorder(b *testing.B) {
	r, err := record.OpenFile(filepath.Join(pcapDir, "lab-names.pcapng"))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var recs [][]byte
	var evs []decode.Event
	var d decode.Decoder
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		rec = append([]byte(nil), rec...)
		var ev decode.Event
		if err := d.Decode(rec, &ev); err != nil {
			b.Fatal(err)
		}
		recs, evs = append(recs, rec), append(evs, ev)
	}
	log := slog.New(slog.DiscardHandler)
	names := replayKubernetes(r, log)
	reports := replayReports(r, log)
	ports := 0
	for _, rep := range reports {
		ports += len(rep.KubeProxy.ServicePorts)
	}
	if names == nil || len(names.Pods) == 0 || ports == 0 {
		b.Fatal("lab-names.pcapng has no pods, or no Service ports in its node reports")
	}
	services := diagnose.NewServices(reports)
	w, err := record.NewWriter(io.Discard, r.Meta())
	if err != nil {
		b.Fatal(err)
	}
	rn := RecordingNames(r)
	rec := &recorder{w: w, netns: rn.Netns, reasons: r.Meta().DropReasons, services: services}
	rec.setKube(k8s.NewPods(names))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ { // an op is an event
		if err := rec.write(recs[i%len(recs)], &evs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
