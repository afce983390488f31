// A small reader built on the C++ ISMRMRD library (Debian libismrmrd-dev), compiled by
// tests/gadget/test_cpp_reader.py: it reads a file the way C++ clients (gadgetron_ismrmrd_client,
// ismrmrd tools) do and prints what it found, one record per line, for the test to compare.
//
//   read_ismrmrd FILE GROUP [IMAGE_VARIABLE ...]
#include <complex>
#include <cstdio>
#include <exception>
#include <ismrmrd/dataset.h>
#include <ismrmrd/meta.h>
#include <ismrmrd/xml.h>
#include <sstream>
#include <string>

namespace {

void print_meta(const std::string &var, unsigned index, const std::string &attributes) {
  if (attributes.empty()) {
    std::printf("meta %s %u (none)\n", var.c_str(), index);
    return;
  }
  ISMRMRD::MetaContainer meta;
  ISMRMRD::deserialize(attributes.c_str(), meta);
  for (auto it = meta.begin(); it != meta.end(); ++it) {
    std::printf("meta %s %u %s=", var.c_str(), index, it->first.c_str());
    for (size_t v = 0; v < meta.length(it->first.c_str()); ++v)
      std::printf("%s%s", v ? "|" : "", meta.as_str(it->first.c_str(), v));
    std::printf("\n");
  }
}

template <typename T>
void print_image(const std::string &var, unsigned index, ISMRMRD::Image<T> &image) {
  std::printf("image %s %u data_type=%u image_type=%u series=%u index=%u slice=%u repetition=%u "
              "matrix=%ux%ux%u channels=%u\n",
              var.c_str(), index, image.getDataType(), image.getImageType(),
              image.getImageSeriesIndex(), image.getImageIndex(), image.getSlice(),
              image.getRepetition(), image.getMatrixSizeX(), image.getMatrixSizeY(),
              image.getMatrixSizeZ(), image.getNumberOfChannels());
  std::printf("pixels %s %u", var.c_str(), index);
  for (size_t i = 0; i < image.getNumberOfDataElements(); ++i) {
    const std::complex<double> value(image.getDataPtr()[i]);
    std::printf(" %.9g %.9g", value.real(), value.imag());
  }
  std::printf("\n");
  std::string attributes;
  image.getAttributeString(attributes);
  print_meta(var, index, attributes);
}

void read_images(ISMRMRD::Dataset &dataset, const std::string &var) {
  const unsigned count = dataset.getNumberOfImages(var);
  std::printf("images %s %u\n", var.c_str(), count);
  for (unsigned i = 0; i < count; ++i) {
    ISMRMRD::Image<float> image;
    dataset.readImage(var, i, image);
    if (image.getDataType() == ISMRMRD::ISMRMRD_FLOAT) {
      print_image(var, i, image);
    } else {
      ISMRMRD::Image<std::complex<float>> complex_image;
      dataset.readImage(var, i, complex_image);
      print_image(var, i, complex_image);
    }
  }
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s FILE GROUP [IMAGE_VARIABLE ...]\n", argv[0]);
    return 2;
  }
  try {
    ISMRMRD::Dataset dataset(argv[1], argv[2], false);
    std::string xml;
    dataset.readHeader(xml);
    ISMRMRD::IsmrmrdHeader header;
    ISMRMRD::deserialize(xml.c_str(), header);
    const ISMRMRD::Encoding &encoding = header.encoding.at(0);
    std::stringstream again;
    ISMRMRD::serialize(header, again);
    std::printf("header version=%ld encoded=%ux%ux%u recon=%ux%ux%u reserialized=%zu\n",
                header.version.is_present() ? header.version.get() : -1L,
                encoding.encodedSpace.matrixSize.x, encoding.encodedSpace.matrixSize.y,
                encoding.encodedSpace.matrixSize.z, encoding.reconSpace.matrixSize.x,
                encoding.reconSpace.matrixSize.y, encoding.reconSpace.matrixSize.z,
                again.str().size());
    const unsigned acquisitions = dataset.getNumberOfAcquisitions();
    std::printf("acquisitions %u\n", acquisitions);
    for (unsigned i = 0; i < acquisitions; ++i) {
      ISMRMRD::Acquisition acq;
      dataset.readAcquisition(i, acq);
      std::complex<double> sum(0, 0);
      for (size_t s = 0; s < acq.getNumberOfDataElements(); ++s) sum += acq.getDataPtr()[s];
      std::printf("acquisition %u channels=%u samples=%u line=%u repetition=%u flags=%llu sum=%.9g,%.9g\n",
                  i, acq.active_channels(), acq.number_of_samples(), acq.idx().kspace_encode_step_1,
                  acq.idx().repetition, static_cast<unsigned long long>(acq.flags()), sum.real(),
                  sum.imag());
    }
    const unsigned waveforms = dataset.getNumberOfWaveforms();
    std::printf("waveforms %u\n", waveforms);
    for (unsigned i = 0; i < waveforms; ++i) {
      ISMRMRD::Waveform waveform;
      dataset.readWaveform(i, waveform);
      unsigned long long sum = 0;
      for (size_t s = 0; s < waveform.size(); ++s) sum += waveform.begin_data()[s];
      std::printf("waveform %u id=%u channels=%u samples=%u sum=%llu\n", i, waveform.head.waveform_id,
                  waveform.head.channels, waveform.head.number_of_samples, sum);
    }
    for (int v = 3; v < argc; ++v) read_images(dataset, argv[v]);
  } catch (const std::exception &error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
