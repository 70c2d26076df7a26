# The bake recipe (docs/ci.md): docker buildx bake [--push | --load]
#   TAG=registry.example/app:1 docker buildx bake --push
# SQUASH_FRONTEND, if set, replaces the Dockerfile's `# syntax=` image (a mirror, a digest)
# through BuildKit's BUILDKIT_SYNTAX build argument.

variable "TAG" {
  default = "app:latest"
}

variable "BASE" {
  default = "debian:bookworm-slim"
}

variable "SQUASH_MODE" {
  default = "full"
}

variable "SQUASH_FRONTEND" {
  default = ""
}

group "default" {
  targets = ["app"]
}

target "app" {
  context    = "."
  dockerfile = "Dockerfile"
  tags       = [TAG]
  args = {
    BASE            = BASE
    SQUASH_MODE     = SQUASH_MODE
    BUILDKIT_SYNTAX = notequal(SQUASH_FRONTEND, "") ? SQUASH_FRONTEND : null
  }
}
