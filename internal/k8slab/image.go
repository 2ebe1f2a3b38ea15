package k8slab

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// layerFile is one entry of an image layer: a file copied from the host
// (from), a file with content, a directory (neither) or a symlink (link).
type layerFile struct {
	name, from, link string
	content          []byte
	mode             int64
}

// busyboxImage is the pods' image: Debian's static busybox with the applets
// the lab uses, and a page for httpd in /www.
func busyboxImage(busybox string) ([]layerFile, []string) {
	files := []layerFile{{name: "bin/"}, {name: "tmp/", mode: 0o1777}, {name: "www/"},
		{name: "bin/busybox", from: busybox, mode: 0o755},
		{name: "www/index.html", content: []byte("pathtrace lab\n"), mode: 0o644}}
	for _, a := range []string{"sh", "httpd", "wget", "nc", "sleep", "cat", "ip", "ls", "echo", "ping"} {
		files = append(files, layerFile{name: "bin/" + a, link: "busybox"})
	}
	return files, []string{"/bin/sh"}
}

// ociArchive is an OCI image layout tarball of one image of one layer, named
// name (the io.containerd.image.name annotation `ctr images import` reads).
func ociArchive(name string, files []layerFile, entrypoint []string) ([]byte, error) {
	var layer bytes.Buffer
	lt := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX}
		var body []byte
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		case strings.HasSuffix(f.name, "/"):
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		default:
			h.Typeflag, body = tar.TypeReg, f.content
			if f.from != "" {
				b, err := os.ReadFile(f.from)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", f.from, err)
				}
				body = b
			}
			h.Size = int64(len(body))
		}
		if err := lt.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
		if _, err := lt.Write(body); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
	}
	if err := lt.Close(); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}

	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    map[string]string `json:"platform,omitempty"`
	}
	blobs := map[string][]byte{}
	blob := func(mediaType string, b []byte) descriptor {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[hex.EncodeToString(sum[:])] = b
		return descriptor{MediaType: mediaType, Digest: d, Size: len(b)}
	}
	mustJSON := func(v any) []byte { b, _ := json.Marshal(v); return b }
	layerDesc := blob("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config := blob("application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": entrypoint, "Env": []string{"PATH=/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	}))
	manifest := blob("application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": config, "layers": []descriptor{layerDesc},
	}))
	_, tag, _ := strings.Cut(name[strings.LastIndex(name, "/")+1:], ":")
	manifest.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
	manifest.Platform = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []descriptor{manifest}})

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	if err := add("index.json", index); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	for sum, b := range blobs {
		if err := add("blobs/sha256/"+sum, b); err != nil {
			return nil, fmt.Errorf("write archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	return out.Bytes(), nil
}
