// Command lab builds and runs three-tier load-balancer labs in Linux network
// namespaces. See README.md, or `lab help`.
package main

import "github.com/lab-lb/lab/internal/cli"

func main() { cli.Main() }
