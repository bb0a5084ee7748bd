// runtime/device/cuda/cublaslt_dynamic.cc: see cublaslt_dynamic.h. Built with -fvisibility=hidden
// (CMakeLists.txt): the extern "C" definitions below are private to the module.
#include "runtime/device/cuda/cublaslt_dynamic.h"

#include <cublasLt.h>
#include <dlfcn.h>
#include <link.h>

#include <string>

#include "eli/error.h"
#include "runtime/device/cuda_library_loader.h"

// Every cublasLt function eli calls: X(name) for cublasLt<name>.
#define ELI_CUBLASLT_FUNCTIONS(X)                                                                    \
  X(GetVersion)                                                                                      \
  X(GetStatusName)                                                                                   \
  X(GetStatusString) X(Create) X(Matmul) X(MatmulAlgoConfigGetAttribute) X(MatmulAlgoGetHeuristic) \
  X(MatmulDescCreate) X(MatmulDescDestroy) X(MatmulDescSetAttribute) X(MatmulPreferenceCreate)     \
  X(MatmulPreferenceDestroy) X(MatmulPreferenceSetAttribute) X(MatrixLayoutCreate) X(MatrixLayoutDestroy)

namespace eli {
namespace cuda {
namespace {

struct LtApi {
#define ELI_LT_FIELD(name) decltype(&::cublasLt##name) name = nullptr;
  ELI_CUBLASLT_FUNCTIONS(ELI_LT_FIELD)
#undef ELI_LT_FIELD
};

#define ELI_STR2(x) #x
#define ELI_STR(x) ELI_STR2(x)
constexpr const char* kSoname = "libcublasLt.so." ELI_STR(CUBLAS_VER_MAJOR);

LtApi load() {
  const CudaLibrarySpec spec{"cuBLASLt",
                             kSoname,
                             "ELI_CUBLASLT_PATH",
                             {"nvidia/cu" ELI_STR(CUBLAS_VER_MAJOR) "/lib", "nvidia/cublas/lib"},
                             CUBLAS_VER_MAJOR >= 13 ? "nvidia-cublas" : "nvidia-cublas-cu12",
                             "CUDA " ELI_STR(CUBLAS_VER_MAJOR)};
  void* h = load_cuda_library(spec);
  LtApi api;
  std::string missing;
#define ELI_LT_RESOLVE(name)                                                                  \
  api.name = reinterpret_cast<decltype(&::cublasLt##name)>(dlsym(h, "cublasLt" #name));       \
  if (api.name == nullptr) missing += " cublasLt" #name;
  ELI_CUBLASLT_FUNCTIONS(ELI_LT_RESOLVE)
#undef ELI_LT_RESOLVE
  struct link_map* lm = nullptr;
  const std::string where = dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != nullptr && lm->l_name != nullptr &&
                                    *lm->l_name != '\0'
                                ? lm->l_name
                                : kSoname;
  ELI_CHECK_KIND(kDevice, missing.empty(), "cuBLASLt at ", where, " lacks", missing);
  const size_t version = api.GetVersion();
  ELI_CHECK_KIND(kDevice, version / 10000 == CUBLAS_VER_MAJOR, "cuBLASLt at ", where, " is version ", version,
                 "; eli was built with cuBLAS ", CUBLAS_VER_MAJOR, ".x headers");
  return api;
}

// Loaded on first use; a failed load throws and is retried by the next call.
const LtApi& api() {
  static const LtApi kApi = load();
  return kApi;
}

}  // namespace

void require_cublaslt() { (void)api(); }

}  // namespace cuda
}  // namespace eli

// The forwarding definitions, with the exact signatures of cublasLt.h.
extern "C" {

size_t CUBLASWINAPI cublasLtGetVersion(void) { return eli::cuda::api().GetVersion(); }
const char* CUBLASWINAPI cublasLtGetStatusName(cublasStatus_t status) {
  return eli::cuda::api().GetStatusName(status);
}
const char* CUBLASWINAPI cublasLtGetStatusString(cublasStatus_t status) {
  return eli::cuda::api().GetStatusString(status);
}
cublasStatus_t CUBLASWINAPI cublasLtCreate(cublasLtHandle_t* handle) { return eli::cuda::api().Create(handle); }
cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t light_handle, cublasLtMatmulDesc_t compute_desc,
                                           const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                                           const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                                           const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                                           cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                                           void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return eli::cuda::api().Matmul(light_handle, compute_desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc,
                                 algo, workspace, workspace_bytes, stream);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoConfigGetAttribute(const cublasLtMatmulAlgo_t* algo,
                                                                 cublasLtMatmulAlgoConfigAttributes_t attr,
                                                                 void* buf, size_t size_in_bytes,
                                                                 size_t* size_written) {
  return eli::cuda::api().MatmulAlgoConfigGetAttribute(algo, attr, buf, size_in_bytes, size_written);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t light_handle, cublasLtMatmulDesc_t operation_desc, cublasLtMatrixLayout_t Adesc,
    cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
    cublasLtMatmulPreference_t preference, int requested_algo_count,
    cublasLtMatmulHeuristicResult_t heuristic_results_array[], int* return_algo_count) {
  return eli::cuda::api().MatmulAlgoGetHeuristic(light_handle, operation_desc, Adesc, Bdesc, Cdesc, Ddesc, preference,
                                                 requested_algo_count, heuristic_results_array, return_algo_count);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmul_desc,
                                                     cublasComputeType_t compute_type, cudaDataType_t scale_type) {
  return eli::cuda::api().MatmulDescCreate(matmul_desc, compute_type, scale_type);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmul_desc) {
  return eli::cuda::api().MatmulDescDestroy(matmul_desc);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmul_desc,
                                                           cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                           size_t size_in_bytes) {
  return eli::cuda::api().MatmulDescSetAttribute(matmul_desc, attr, buf, size_in_bytes);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  return eli::cuda::api().MatmulPreferenceCreate(pref);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  return eli::cuda::api().MatmulPreferenceDestroy(pref);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                                 cublasLtMatmulPreferenceAttributes_t attr,
                                                                 const void* buf, size_t size_in_bytes) {
  return eli::cuda::api().MatmulPreferenceSetAttribute(pref, attr, buf, size_in_bytes);
}
cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* mat_layout, cudaDataType type,
                                                       uint64_t rows, uint64_t cols, int64_t ld) {
  return eli::cuda::api().MatrixLayoutCreate(mat_layout, type, rows, cols, ld);
}
cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t mat_layout) {
  return eli::cuda::api().MatrixLayoutDestroy(mat_layout);
}

}  // extern "C"
