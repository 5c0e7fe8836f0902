// This test process's own folder under the test temp dir. CTest runs every test as its own process,
// two at a time, so two tests that pick the same file name must not share (or overwrite) one file.
// The folder is removed when the process ends if every test passed, and kept for a look otherwise.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace ebm::test {

inline const std::filesystem::path& process_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path p =
        std::filesystem::path(::testing::TempDir()) / ("ebm_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p;
  }();
  // Registered after `dir` exists, so it runs before `dir` is destroyed.
  static const bool cleanup = [] {
    return std::atexit([] {
             if (::testing::UnitTest::GetInstance()->Passed()) {
               std::error_code ec;
               std::filesystem::remove_all(dir, ec);
             }
           }) == 0;
  }();
  (void)cleanup;
  return dir;
}

// The pid of a process that has exited (and been reaped): nothing runs under it now, so a file
// named after it is what a killed writer leaves behind.
inline pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

}  // namespace ebm::test
