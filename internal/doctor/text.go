package doctor

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

const (
	ansiReset = "\x1b[0m"
	ansiBold  = "\x1b[1m"
	ansiDim   = "\x1b[2m"
)

var statusColor = map[Status]string{
	StatusOK:      "\x1b[32m",
	StatusWarn:    "\x1b[33m",
	StatusBad:     "\x1b[31m",
	StatusInfo:    "\x1b[36m",
	StatusUnknown: "\x1b[35m",
}

// maxNameWidth caps the name column; longer names push their value right.
const maxNameWidth = 44

// WriteText writes the report for a terminal: one block per item with its
// status, name and value, the meaning, and the command to check it by hand.
// color adds ANSI colors; the caller decides it once (--color, NO_COLOR).
func (r *Report) WriteText(w io.Writer, color bool) error {
	p := &printer{w: w, color: color}
	ns := r.Netns
	if ns == "" {
		ns = "own (caller's)"
	}
	kernel := r.Kernel
	if kernel == "" {
		kernel = "unknown"
	}
	p.printf("%s\n", p.paint(ansiBold, fmt.Sprintf("pathtrace doctor — netns %s, kernel %s", ns, kernel)))
	p.printf("kube-proxy mode: %s, CNI: %s, overlays: %d, pod bridges: %d\n",
		r.KubeProxy.Mode, r.Network.CNI, len(r.Network.Overlays), len(r.Network.Bridges))

	for _, s := range r.Sections {
		p.printf("\n%s\n", p.paint(ansiBold, s.Title))
		if len(s.Items) == 0 {
			p.printf("  %s\n", p.paint(ansiDim, "(not probed)"))
			continue
		}
		width := 0
		for _, it := range s.Items {
			width = max(width, min(utf8.RuneCountInString(it.Name), maxNameWidth))
		}
		for _, it := range s.Items {
			p.item(it, width)
		}
	}

	c := r.Counts()
	p.printf("\nsummary: %d ok, %d warn, %d bad, %d info, %d unknown\n",
		c[StatusOK], c[StatusWarn], c[StatusBad], c[StatusInfo], c[StatusUnknown])
	return p.err
}

type printer struct {
	w     io.Writer
	color bool
	err   error
}

func (p *printer) printf(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, format, args...)
}

func (p *printer) paint(code, s string) string {
	if !p.color || code == "" {
		return s
	}
	return code + s + ansiReset
}

// item prints:
//
//	warn     net.bridge.bridge-nf-call-iptables  0
//	         bridged pod-to-pod traffic skips iptables: ...
//	         $ sysctl net.bridge.bridge-nf-call-iptables   [/proc/sys/...]
func (p *printer) item(it Item, width int) {
	const indent = "           "
	status := fmt.Sprintf("%-7s", it.Status)
	name := it.Name
	if pad := width - utf8.RuneCountInString(name); pad > 0 {
		name += strings.Repeat(" ", pad)
	}
	p.printf("  %s  %s  %s\n", p.paint(statusColor[it.Status], status), name, it.Value)
	if it.Explain != "" {
		p.printf("%s%s\n", indent, it.Explain)
	}
	var tail []string
	if it.Check != "" {
		tail = append(tail, "$ "+it.Check)
	}
	if it.Source != "" {
		tail = append(tail, "["+it.Source+"]")
	}
	if len(tail) > 0 {
		p.printf("%s%s\n", indent, p.paint(ansiDim, strings.Join(tail, "   ")))
	}
}
