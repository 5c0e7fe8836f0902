// expect_error, shared by the test suites: runs `fn`, expecting an ebm::Error whose message
// contains every fragment (another exception type escapes and fails the test).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ebm/error.h"

namespace ebm::test {

template <class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an ebm::Error mentioning '" << fragments.front() << "'";
  } catch (const ebm::Error& e) {
    const std::string msg = e.what();
    for (const std::string& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "message: " << msg << "\nmissing: " << f;
  }
}

}  // namespace ebm::test
