// Command dockerfile-lint runs BuildKit's own Dockerfile checks (the ones behind
// `docker build --check`) without a BuildKit daemon, so CI can check our images on a
// machine with no container engine and no registry.
//
// Every base image resolves to a stand-in config holding only the standard PATH: the
// real configs live in a registry we cannot reach. Checks that read a base image's
// environment therefore only know PATH, which is what our Dockerfile relies on.
//
// It also checks that every COPY/ADD source taken from the build context exists there
// and is not kept out by the ignore file BuildKit would use.
//
// Usage: dockerfile-lint [--target NAME] [--context DIR] DOCKERFILE...
// Prints one JSON report per file and exits 1 when any file has a warning or an error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/opencontainers/go-digest"
)

const standardPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(
	_ context.Context, ref string, _ sourceresolver.Opt,
) (string, digest.Digest, []byte, error) {
	// One layer, so BuildKit treats the base as an image rather than scratch.
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{standardPath}},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{digest.FromString(ref).String()},
		},
	}
	raw, err := json.Marshal(config)
	return ref, "", raw, err
}

type finding struct {
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
	URL    string `json:"url,omitempty"`
	Line   int32  `json:"line"`
}

type report struct {
	File     string    `json:"file"`
	Warnings []finding `json:"warnings"`
	Error    string    `json:"error,omitempty"`
}

func lint(path, target, contextDir string) (report, error) {
	rep := report{File: path, Warnings: []finding{}}
	data, err := os.ReadFile(path)
	if err != nil {
		return rep, err
	}
	ctx := context.Background()
	source := llb.Scratch()
	sourceMap := llb.NewSourceMap(&source, path, "Dockerfile", data)
	// The lint report indexes its sources by their LLB definition.
	if sourceMap.Definition, err = source.Marshal(ctx); err != nil {
		return rep, err
	}
	opt := dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{Target: target},
		MainContext:  &source,
		SourceMap:    sourceMap,
		MetaResolver: offlineResolver{},
	}
	results, err := dockerfile2llb.DockerfileLint(ctx, data, opt)
	if err != nil {
		return rep, err
	}
	for _, w := range results.Warnings {
		var line int32
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = w.Location.Ranges[0].Start.Line
		}
		rep.Warnings = append(rep.Warnings, finding{w.RuleName, w.Detail, w.URL, line})
	}
	if results.Error != nil {
		rep.Error = results.Error.Message
		return rep, nil
	}
	problems, err := contextProblems(path, data, contextDir)
	rep.Warnings = append(rep.Warnings, problems...)
	return rep, err
}

func main() {
	target := flag.String("target", "", "stage to lint (default: every stage)")
	contextDir := flag.String("context", ".", "the build context COPY and ADD read from")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-lint [--target NAME] [--context DIR] DOCKERFILE...")
		os.Exit(2)
	}
	failed := false
	encoder := json.NewEncoder(os.Stdout)
	for _, path := range flag.Args() {
		rep, err := lint(path, *target, *contextDir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(2)
		}
		failed = failed || len(rep.Warnings) > 0 || rep.Error != ""
		if err := encoder.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if failed {
		os.Exit(1)
	}
}
