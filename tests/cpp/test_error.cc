// tests/cpp/test_error.cc: what eli::Error shows users (eli/error.h, issue 21): the message alone by
// default, the file:line and failed condition only in debug mode (ELI_DEBUG=1), while location()
// and condition() always carry them; internal errors always say they are internal, once.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "eli/error.h"

namespace eli {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Restores the environment-driven default when a test ends.
struct DebugGuard {
  ~DebugGuard() {
    reset_error_debug();
    ::unsetenv("ELI_DEBUG");
  }
};

Error catch_check(int x) {
  try {
    ELI_CHECK_ARG(x > 0, "x must be positive, got ", x);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error(ErrorKind::kInternal, "unreachable");
}

TEST(ErrorText, NoLocationByDefault) {
  DebugGuard guard;
  ::unsetenv("ELI_DEBUG");
  const Error e = catch_check(-3);
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_STREQ(e.what(), "x must be positive, got -3");
  EXPECT_EQ(e.message(), "x must be positive, got -3");
  // The location and the condition stay on the object for logs.
  EXPECT_TRUE(contains(e.location(), "test_error.cc:")) << e.location();
  EXPECT_EQ(e.condition(), "x > 0");
  EXPECT_FALSE(contains(e.what(), "test_error.cc"));
  EXPECT_FALSE(contains(e.what(), "check failed"));
}

TEST(ErrorText, EveryKindKeepsLocationOut) {
  DebugGuard guard;
  set_error_debug(false);
  for (ErrorKind kind : {ErrorKind::kInvalidArgument, ErrorKind::kModelLoad, ErrorKind::kOutOfMemory,
                         ErrorKind::kUnsupported, ErrorKind::kNotCompiled, ErrorKind::kDevice, ErrorKind::kInternal}) {
    try {
      switch (kind) {  // ELI_THROW / ELI_CHECK_KIND take the kind as a token
        case ErrorKind::kInvalidArgument: ELI_CHECK_KIND(kInvalidArgument, 1 == 2, "boom"); break;
        case ErrorKind::kModelLoad: ELI_CHECK_KIND(kModelLoad, 1 == 2, "boom"); break;
        case ErrorKind::kOutOfMemory: ELI_THROW(kOutOfMemory, "boom"); break;
        case ErrorKind::kUnsupported: ELI_THROW(kUnsupported, "boom"); break;
        case ErrorKind::kNotCompiled: ELI_THROW(kNotCompiled, "boom"); break;
        case ErrorKind::kDevice: ELI_THROW(kDevice, "boom"); break;
        case ErrorKind::kInternal: ELI_CHECK_KIND(kInternal, 1 == 2, "boom"); break;
      }
      ADD_FAILURE() << "no error for " << error_kind_name(kind);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind);
      EXPECT_FALSE(contains(e.what(), ".cc")) << e.what();
      EXPECT_FALSE(contains(e.what(), "1 == 2")) << e.what();
      EXPECT_TRUE(contains(e.what(), "boom")) << e.what();
      EXPECT_FALSE(e.location().empty());
    }
  }
}

TEST(ErrorText, DebugModeAddsLocationAndCondition) {
  DebugGuard guard;
  set_error_debug(true);
  const Error e = catch_check(0);
  EXPECT_TRUE(contains(e.what(), "x must be positive, got 0 [test_error.cc:")) << e.what();
  EXPECT_TRUE(contains(e.what(), ": check failed: x > 0]")) << e.what();
}

TEST(ErrorText, EnvironmentSwitch) {
  DebugGuard guard;
  reset_error_debug();
  ::setenv("ELI_DEBUG", "1", 1);
  EXPECT_TRUE(error_debug());
  EXPECT_TRUE(contains(catch_check(0).what(), "check failed")) << catch_check(0).what();
  ::setenv("ELI_DEBUG", "0", 1);
  EXPECT_FALSE(error_debug());
  EXPECT_FALSE(contains(catch_check(0).what(), "check failed"));
  ::setenv("ELI_DEBUG", "", 1);
  EXPECT_FALSE(error_debug());
}

TEST(ErrorText, InternalErrorsSayWhatTheyAreOnce) {
  DebugGuard guard;
  set_error_debug(false);
  try {
    ELI_CHECK_KIND(kInternal, false, "block table corrupt");
    FAIL();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("internal error: block table corrupt", 0), 0u) << what;
    EXPECT_TRUE(contains(what, "please report")) << what;
    EXPECT_EQ(e.message(), "block table corrupt");
    // Re-thrown with context (as the async engine does): still one "internal error".
    const Error wrapped(ErrorKind::kInternal, std::string("prompt 2: ") + e.what());
    const std::string w = wrapped.what();
    EXPECT_EQ(w.find("internal error"), w.rfind("internal error")) << w;
    EXPECT_EQ(w.find("please report"), w.rfind("please report")) << w;
  }
  // An internal error thrown without a message still names itself.
  EXPECT_TRUE(contains(Error(ErrorKind::kInternal, "").what(), "internal error"));
  // Other kinds get no prefix.
  EXPECT_STREQ(Error(ErrorKind::kDevice, "cuda gone").what(), "cuda gone");
}

// ELI_CHECK guards eli's own invariants (a failure is a bug: kInternal, "please report it");
// ELI_CHECK_ARG guards what a caller passed (kInvalidArgument, the message alone).
TEST(ErrorText, CheckIsInternalAndCheckArgIsTheCallers) {
  DebugGuard guard;
  set_error_debug(false);
  bool thrown = false;
  try {
    ELI_CHECK(false, "a");
  } catch (const Error& e) {
    thrown = true;
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);
    EXPECT_EQ(e.condition(), "false");
    EXPECT_EQ(e.message(), "a");
    EXPECT_TRUE(contains(e.what(), "internal error")) << e.what();
    EXPECT_TRUE(contains(e.what(), "please report")) << e.what();
  }
  EXPECT_TRUE(thrown);
  thrown = false;
  try {
    ELI_CHECK_ARG(false, "b");
  } catch (const Error& e) {
    thrown = true;
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_STREQ(e.what(), "b");
  }
  EXPECT_TRUE(thrown);
}

}  // namespace
}  // namespace eli
