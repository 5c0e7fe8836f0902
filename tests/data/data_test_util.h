// Helpers shared by the dataset tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ebm/error.h"

namespace ebm::test {

// Runs `body`, expecting an ebm::Error whose message contains every needle.
template <typename F>
void expect_error(F body, const std::vector<std::string>& needles) {
  try {
    body();
    ADD_FAILURE() << "no error; expected one mentioning '" << needles.front() << "'";
  } catch (const ebm::Error& e) {
    for (const std::string& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << n;
  }
}

}  // namespace ebm::test
