package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ignoreFile is the file BuildKit reads for a Dockerfile: <name>.dockerignore beside the
// Dockerfile wins over .dockerignore at the root of the context.
func ignoreFile(dockerfile, contextDir string) string {
	beside := dockerfile + ".dockerignore"
	if _, err := os.Stat(beside); err == nil {
		return beside
	}
	return filepath.Join(contextDir, ".dockerignore")
}

func readIgnore(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ignorefile.ReadAll(bytes.NewReader(data))
}

// contextProblems lists every COPY or ADD source taken from the build context that is
// missing there or that the ignore file keeps out, which `docker build` would only
// report after pulling the base images.
func contextProblems(dockerfile string, data []byte, contextDir string) ([]finding, error) {
	patterns, err := readIgnore(ignoreFile(dockerfile, contextDir))
	if err != nil {
		return nil, err
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, err
	}
	parsed, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(parsed.AST, nil)
	if err != nil {
		return nil, err
	}
	problems := []finding{}
	for _, stage := range stages {
		for _, cmd := range stage.Commands {
			var sources []string
			var line int32
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					continue
				}
				sources, line = c.SourcePaths, int32(c.Location()[0].Start.Line)
			case *instructions.AddCommand:
				sources, line = c.SourcePaths, int32(c.Location()[0].Start.Line)
			default:
				continue
			}
			for _, src := range sources {
				if detail := checkSource(src, contextDir, matcher); detail != "" {
					problems = append(problems, finding{"ContextSource", detail, "", line})
				}
			}
		}
	}
	return problems, nil
}

func checkSource(src, contextDir string, matcher *patternmatcher.PatternMatcher) string {
	if strings.Contains(src, "://") {
		return ""
	}
	rel := filepath.Clean(strings.TrimPrefix(src, "/"))
	matches, err := filepath.Glob(filepath.Join(contextDir, rel))
	if err != nil || len(matches) == 0 {
		return fmt.Sprintf("%q is not in the build context", src)
	}
	for _, match := range matches {
		inside, _ := filepath.Rel(contextDir, match)
		excluded, err := matcher.MatchesOrParentMatches(filepath.ToSlash(inside))
		if err != nil {
			return err.Error()
		}
		if excluded {
			return fmt.Sprintf("%q is excluded by the ignore file", inside)
		}
	}
	return ""
}
