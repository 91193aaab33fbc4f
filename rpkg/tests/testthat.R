library(testthat)
library(starburst)

test_check("starburst")
