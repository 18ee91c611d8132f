# Packaging tests of the Release build (not the sanitizer builds: consumers
# would need the sanitizer runtimes).  install_stage installs this build
# with DESTDIR into a stage, the consumer tests build tests/consumer against
# it, install_unstage uninstalls it again through the install manifest.
if(CMAP_SANITIZE)
  return()
endif()
set(CMAP_RUN sh ${PROJECT_SOURCE_DIR}/tests/consumer/run.sh)
set(CMAP_STAGE ${PROJECT_BINARY_DIR}/consumer/stage)
set(CMAP_CONSUMER_ENV CC=${CMAKE_C_COMPILER})

add_test(NAME install_stage COMMAND ${CMAP_RUN} stage ${PROJECT_BINARY_DIR} ${CMAP_STAGE})
add_test(NAME install_unstage COMMAND ${CMAP_RUN} unstage ${PROJECT_BINARY_DIR} ${CMAP_STAGE})
set_tests_properties(install_stage PROPERTIES FIXTURES_SETUP cmap_stage)
set_tests_properties(install_unstage PROPERTIES FIXTURES_CLEANUP cmap_stage)

add_test(NAME consumer_pkgconfig COMMAND ${CMAP_RUN} pkgconfig ${CMAP_STAGE}
  ${CMAKE_INSTALL_PREFIX} ${PROJECT_BINARY_DIR}/consumer/pkgconfig)
add_test(NAME consumer_find_package COMMAND ${CMAP_RUN} cmake ${CMAP_STAGE}
  ${CMAKE_INSTALL_PREFIX} ${PROJECT_BINARY_DIR}/consumer/find_package)
add_test(NAME man_pages COMMAND sh ${PROJECT_SOURCE_DIR}/tests/check-man.sh
  ${PROJECT_SOURCE_DIR}/include/cmap.h ${CMAP_STAGE}${CMAKE_INSTALL_FULL_MANDIR})
set_tests_properties(consumer_pkgconfig consumer_find_package man_pages
  PROPERTIES FIXTURES_REQUIRED cmap_stage)

add_test(NAME consumer_add_subdirectory COMMAND ${CMAP_RUN} subdir
  ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/consumer/add_subdirectory)

# Installs into /usr: root only (skipped otherwise), alone (no other test
# may build while a cmap.h sits in /usr/include), removed even on failure.
add_test(NAME package_deb COMMAND ${CMAP_RUN} deb ${PROJECT_SOURCE_DIR}
  ${PROJECT_BINARY_DIR}/consumer/deb)
set_tests_properties(package_deb PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL ON
  TIMEOUT 600)

set_tests_properties(install_stage install_unstage consumer_pkgconfig
  consumer_find_package consumer_add_subdirectory package_deb
  PROPERTIES ENVIRONMENT "${CMAP_CONSUMER_ENV}")
