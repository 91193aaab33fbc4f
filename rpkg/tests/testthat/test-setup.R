## starburst_setup() / starburst_teardown() against the AWS emulator (`cargo
## xtask emulator`): idempotency, resume after a failure, teardown of exactly
## what set-up made. Skipped on the local backend.

test_that("set-up creates everything once, writes the set-up file, and changes nothing when run again", {
  skip_unless_emulator()
  path <- local_setup_file()
  expect_message(
    first <- starburst_setup(region = "us-east-1", name = "sbidem", confirm = FALSE),
    "7 to create"
  )
  expect_s3_class(first, "starburst_setup")
  expect_equal(first$setup_id, "sbidem-us-east-1")
  expect_equal(first$resources$change, rep("created", 7))
  expect_setequal(first$resources$kind, c("S3 bucket", "ECR repository", "ECS cluster", "log group",
                                         "security group", "IAM role"))
  settings <- jsonlite::fromJSON(path, simplifyVector = FALSE)
  for (f in c("region", "bucket", "cluster", "log_group", "repository", "setup_id",
              "task_role_arn", "execution_role_arn", "endpoint_url")) {
    expect_true(length(settings[[f]]) == 1L && nzchar(settings[[f]]), info = f)
  }
  expect_gte(length(settings$subnets), 1L)
  expect_length(settings$security_groups, 1L)
  expect_match(settings$repository, "dkr.ecr.us-east-1.amazonaws.com/sbidem$")

  before <- emulator("stats")$requests
  expect_message(
    second <- starburst_setup(region = "us-east-1", name = "sbidem", confirm = FALSE),
    "Everything exists already"
  )
  expect_equal(second$resources$change, rep("unchanged", 7))
  expect_identical(writes_since(before), character(0))
  expect_identical(jsonlite::fromJSON(path, simplifyVector = FALSE), settings)

  suppressMessages(starburst_teardown(confirm = FALSE))
  expect_false(file.exists(path))
})

test_that("set-up makes the CodeBuild project and its role only when asked, and teardown deletes them", {
  skip_unless_emulator()
  path <- local_setup_file()
  expect_message(
    made <- starburst_setup(region = "us-east-1", name = "sbcloud", confirm = FALSE, cloud_builder = TRUE),
    "9 to create"
  )
  expect_equal(tail(made$resources$kind, 2), c("IAM role", "CodeBuild project"))
  expect_equal(tail(made$resources$name, 1), "sbcloud-us-east-1-builder")
  expect_equal(read_aws_setup(path)$build_project, "sbcloud-us-east-1-builder")
  ## The project, as CodeBuild reports it: builds log to the set-up's log group
  python <- Sys.getenv("STARBURST_EMULATOR_PYTHON")
  if (nzchar(python)) {
    ## (without R's LD_LIBRARY_PATH, which can break another Python's ssl module)
    out <- system2("env", c("-u", "LD_LIBRARY_PATH", shQuote(python), "-c", shQuote(paste(
      "import boto3, json",
      "cb = boto3.client('codebuild', region_name='us-east-1')",
      "p = cb.batch_get_projects(names=['sbcloud-us-east-1-builder'])['projects'][0]",
      "print(json.dumps([p['serviceRole'], p['logsConfig']['cloudWatchLogs']['groupName'], p['source']['location']]))",
      sep = "\n"))), stdout = TRUE)
    project <- jsonlite::fromJSON(out)
    expect_match(project[[1]], ":role/sbcloud-us-east-1-builder$")
    expect_equal(project[[2]], "/sbcloud/workers")
    expect_match(project[[3]], "/starburst/builds/$")
  }
  removed <- suppressMessages(starburst_teardown(confirm = FALSE))
  expect_true("CodeBuild project" %in% removed$kind)
  again <- suppressMessages(starburst_setup(region = "us-east-1", name = "sbcloud", confirm = FALSE))
  expect_false("CodeBuild project" %in% again$resources$kind)
  expect_null(read_aws_setup(path)$build_project)
  suppressMessages(starburst_teardown(confirm = FALSE))
})

test_that("a set-up interrupted half-way resumes where it stopped", {
  skip_unless_emulator()
  path <- local_setup_file()
  ## The first role cannot be created (as without iam:CreateRole)
  emulator("faults", list(service = "iam", operation = "CreateRole", status = 403,
                          code = "AccessDenied", message = "not authorized to perform iam:CreateRole"))
  withr::defer(emulator("faults", method = "DELETE"))
  err <- expect_error(
    suppressMessages(starburst_setup(region = "us-east-1", name = "sbresume", confirm = FALSE)),
    class = "starburst_error"
  )
  expect_match(conditionMessage(err), "iam:CreateRole")
  expect_false(file.exists(path))

  msgs <- testthat::capture_messages(
    resumed <- starburst_setup(region = "us-east-1", name = "sbresume", confirm = FALSE)
  )
  expect_true(any(grepl("2 to create \\(\\+\\), 5 existing", msgs)), info = paste(msgs, collapse = ""))
  expect_equal(resumed$resources$change, c(rep("unchanged", 5), rep("created", 2)))
  expect_true(file.exists(path))
  suppressMessages(starburst_teardown(confirm = FALSE))
})

test_that("teardown deletes exactly what set-up made and touches nothing untagged", {
  skip_unless_emulator()
  path <- local_setup_file()
  before <- emulator("stats")$requests
  suppressMessages(starburst_setup(region = "us-east-1", name = "sbdown", confirm = FALSE))
  msgs <- testthat::capture_messages(gone <- starburst_teardown(confirm = FALSE))
  expect_equal(nrow(gone), 7L)
  expect_true(any(grepl("will delete the 7 resources of set-up sbdown-us-east-1", msgs)))
  expect_false(file.exists(path))
  ## Nothing of the set-up is left, and a second teardown finds nothing
  expect_message(again <- starburst_teardown(setup_id = "sbdown-us-east-1", region = "us-east-1",
                                             confirm = FALSE),
                 "nothing to delete")
  expect_equal(nrow(again), 0L)
  ## One delete per resource of the set-up, nothing else deleted (the
  ## emulator's own untagged bucket, cluster, log group and repository stay)
  ops <- ops_since(before)
  expect_equal(ops[c("s3 DELETE bucket", "ecr DeleteRepository", "ecs DeleteCluster",
                         "logs DeleteLogGroup", "ec2 DeleteSecurityGroup", "iam DeleteRole")],
               c(1, 1, 1, 1, 1, 2), ignore_attr = TRUE)
})

test_that("set-up refuses a bad option before touching AWS", {
  skip_unless_emulator()
  local_setup_file()
  before <- emulator("stats")$requests
  expect_error(starburst_setup(region = "us-east-1", log_retention_days = 10, confirm = FALSE),
               "CloudWatch Logs accepts", class = "starburst_invalid_argument")
  expect_error(starburst_setup(region = "moon", confirm = FALSE), class = "starburst_invalid_argument")
  expect_identical(writes_since(before), character(0))
})

## A stand-in docker CLI: records its calls, and "pushes" an image by putting a
## manifest with that tag into the emulator's ECR
local_fake_docker <- function(.env = parent.frame()) {
  python <- Sys.getenv("STARBURST_EMULATOR_PYTHON")
  testthat::skip_if_not(nzchar(python), "needs STARBURST_EMULATOR_PYTHON (set by cargo xtask test)")
  dir <- withr::local_tempdir(.local_envir = .env)
  log <- file.path(dir, "calls.jsonl")
  script <- file.path(dir, "docker")
  ## A shell wrapper: R's LD_LIBRARY_PATH can break another Python's ssl module
  writeLines(c("#!/bin/sh", "unset LD_LIBRARY_PATH",
               sprintf("exec %s %s \"$@\"", shQuote(python), shQuote(paste0(script, ".py")))),
             script)
  writeLines(c(
    "import json, os, sys",
    "args = sys.argv[1:]",
    "stdin = sys.stdin.read() if args[:1] == ['login'] else ''",
    sprintf("open(%s, 'a').write(json.dumps({'args': args, 'stdin': len(stdin)}) + '\\n')", deparse(log)),
    "if args[:2] == ['buildx', 'version']:",
    "    print('github.com/docker/buildx v0.17.1 (stand-in)'); sys.exit(0)",
    "if args[:1] == ['login']:",
    "    print('Login Succeeded'); sys.exit(0)",
    "if args[:2] == ['buildx', 'build']:",
    "    import boto3",
    "    context = args[-1]",
    "    assert os.path.isfile(os.path.join(context, 'Dockerfile')), 'no Dockerfile'",
    "    uri, tag = args[args.index('--tag') + 1].rsplit(':', 1)",
    "    host, name = uri.split('/', 1)",
    "    ecr = boto3.client('ecr', endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name=host.split('.')[3])",
    "    manifest = {'schemaVersion': 2, 'mediaType': 'application/vnd.docker.distribution.manifest.v2+json',",
    "                'config': {'mediaType': 'application/vnd.docker.container.image.v1+json', 'size': 2, 'digest': 'sha256:' + '0' * 64},",
    "                'layers': []}",
    "    print('#1 [internal] load build definition from Dockerfile')",
    "    try:",
    "        ecr.put_image(repositoryName=name, imageManifest=json.dumps(manifest), imageTag=tag)",
    "    except ecr.exceptions.ImageAlreadyExistsException:",
    "        pass  # a push of the same image again, as docker does",
    "    print('#9 pushing ' + uri + ':' + tag + ' done')",
    "    sys.exit(0)",
    "print('unexpected docker call: ' + ' '.join(args), file=sys.stderr)",
    "sys.exit(1)"
  ), paste0(script, ".py"))
  Sys.chmod(script, "0755")
  withr::local_envvar(STARBURST_DOCKER = script, .local_envir = .env)
  list(calls = function() {
    if (!file.exists(log)) return(list())
    lapply(readLines(log), jsonlite::fromJSON, simplifyVector = FALSE)
  })
}

test_that("after set-up, plan() builds the runtime and the environment's image once and runs futures on it", {
  skip_unless_emulator()
  path <- local_setup_file()
  docker <- local_fake_docker()
  package <- file.path(withr::local_tempdir(), "starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz")
  writeBin(charToRaw("starburst binary package stand-in"), package)
  withr::local_envvar(STARBURST_RUNTIME_PACKAGE = package,
                      STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  withr::local_options(starburst.environment = "image", starburst.builder = "docker")
  ## A lockfile fixes the environment's packages (the session's would change as
  ## packages get loaded, and a new package set is a new image)
  lock <- withr::local_tempfile(fileext = ".lock")
  writeLines('{"R": {"Version": "4.2.2", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"future": {"Package": "future", "Version": "1.31.0", "Source": "Repository", "Repository": "CRAN"}}}', lock)
  withr::local_options(starburst.renv_lock = lock)
  suppressMessages(starburst_setup(region = "us-east-1", name = "sbimage", confirm = FALSE))
  withr::defer(suppressMessages(starburst_teardown(confirm = FALSE)))
  expect_false(nzchar(jsonlite::fromJSON(path)$image %||% ""))

  ## Build progress goes to stderr as it happens (from inside the engine's call,
  ## where R's calling handlers do not reach)
  msgs <- utils::capture.output(type = "message", {
    future::plan(starburst, backend = "aws", workers = 2L)
    y <- future.apply::future_sapply(1:4, function(i) i * 10)
  })
  expect_equal(y, c(10, 20, 30, 40))
  expect_true(any(grepl("building image", msgs)), info = paste(msgs, collapse = ""))
  expect_true(any(grepl("#9 pushing", msgs)), info = "docker's output is shown while it builds")
  image <- jsonlite::fromJSON(path)$image
  expect_match(image, "dkr\\.ecr\\.us-east-1\\.amazonaws\\.com/sbimage:env-r[0-9.]+-amd64-[0-9a-f]{16}$")

  ## The runtime first (from the binary package), then the environment on it
  calls <- docker$calls()
  verbs <- vapply(calls, function(c) paste(unlist(c$args)[1:2], collapse = " "), "")
  expect_equal(verbs, rep(c("buildx version", "login --username", "buildx build"), 2))
  expect_gt(calls[[2]]$stdin, 0)   # the ECR token went through stdin
  build <- unlist(calls[[3]]$args)
  expect_true(all(c("--platform", "linux/amd64", "--push", "--provenance=false") %in% build))
  expect_match(build[which(build == "--tag") + 1L], ":runtime-[0-9.]+-r[0-9.]+-amd64-")
  expect_match(unlist(calls[[6]]$args)[which(unlist(calls[[6]]$args) == "--tag") + 1L], ":env-r")

  cost <- starburst_cost()
  expect_equal(cost$backend, "aws")
  expect_gte(cost$workers, 1)
  future::plan(future::sequential)

  ## Same environment, new session: the image is reused, nothing is built
  starburst_rebuild_environment()
  future::plan(starburst, backend = "aws", workers = 1L)
  expect_equal(future::value(future::future(6 * 7)), 42)
  future::plan(future::sequential)
  expect_length(docker$calls(), 6L)
  ## force = TRUE builds both again
  suppressMessages(res <- starburst_rebuild_environment(force = TRUE))
  expect_length(res$built, 2L)
  expect_length(docker$calls(), 12L)
})

test_that("a name taken by a resource set-up did not make is a conflict, never adopted", {
  skip_unless_emulator()
  local_setup_file()
  ## the emulator's own (untagged) ECR repository and cluster are called "starburst"
  err <- expect_error(suppressMessages(starburst_setup(region = "us-east-1", confirm = FALSE)),
                      class = "starburst_conflict")
  expect_s3_class(err, "starburst_setup_failed")
  expect_match(conditionMessage(err), "starburst_setup(name = ...)", fixed = TRUE)
  expect_match(conditionMessage(err), "left untouched")
  gone <- suppressMessages(starburst_teardown(setup_id = "starburst-us-east-1", region = "us-east-1",
                                              confirm = FALSE))
  expect_equal(gone$kind, "S3 bucket")   # made before the conflict; the rest was never touched
})
