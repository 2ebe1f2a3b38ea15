package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestArchive reads an archive back as an OCI image layout: its index
// names the image, the manifest's config and layer are blobs of the
// archive, the layer holds the files, and the same input gives the same
// bytes.
func TestArchive(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pathtrace")
	if err := os.WriteFile(bin, []byte("\x7fELF binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := Archive("example.org/pathtrace:v1", "arm64", PathtraceFiles(bin), []string{"/pathtrace"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Archive("example.org/pathtrace:v1", "arm64", PathtraceFiles(bin), []string{"/pathtrace"})
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("two archives of the same input differ (%v)", err)
	}
	entries := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name], _ = io.ReadAll(tr)
	}
	type desc struct {
		Digest      string
		Annotations map[string]string
		Platform    map[string]string
	}
	var index struct{ Manifests []desc }
	if err := json.Unmarshal(entries["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %+v", err, index)
	}
	m := index.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != "example.org/pathtrace:v1" || m.Annotations["org.opencontainers.image.ref.name"] != "v1" || m.Platform["architecture"] != "arm64" {
		t.Errorf("manifest descriptor %+v", m)
	}
	blob := func(d string) []byte {
		t.Helper()
		b, ok := entries["blobs/sha256/"+d[len("sha256:"):]]
		if !ok {
			t.Fatalf("no blob %s", d)
		}
		return b
	}
	var manifest struct {
		Config desc
		Layers []desc
	}
	if err := json.Unmarshal(blob(m.Digest), &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %v, %+v", err, manifest)
	}
	var config struct {
		Architecture string
		Config       struct{ Entrypoint []string }
	}
	if err := json.Unmarshal(blob(manifest.Config.Digest), &config); err != nil || config.Architecture != "arm64" || len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/pathtrace" {
		t.Errorf("config %+v, %v", config, err)
	}
	layer := tar.NewReader(bytes.NewReader(blob(manifest.Layers[0].Digest)))
	found := false
	for {
		h, err := layer.Next()
		if err != nil {
			break
		}
		if h.Name == "pathtrace" {
			body, _ := io.ReadAll(layer)
			found = string(body) == "\x7fELF binary" && h.Mode == 0o755
		}
	}
	if !found {
		t.Error("the layer has no /pathtrace of the binary's content, mode 0755")
	}
}
